// Squared error: one pass over pred and target gives the loss and d(loss)/d(pred).
#include "arguments.h"
#include "pyfit.h"

#include <deque>
#include <mutex>

namespace pyfit {
namespace {

using at::vec::Vectorized;

// Lanes sum up to this many elements in scalar_t before flushing into a double, so
// float32 keeps close to torch's (cascaded) float32 sum without paying for doubles
// in the inner loop.
constexpr int64_t kFlush = 512;

template <typename scalar_t>
double squared_error_block(const scalar_t* pred, const scalar_t* target, scalar_t* grad,
                           int64_t n, scalar_t scale) {
  using Vec = Vectorized<scalar_t>;
  constexpr int64_t W = Vec::size();
  const Vec vscale(scale);
  double total = 0;
  int64_t i = 0;
  while (i + W <= n) {
    const int64_t stop = std::min(n - (n - i) % W, i + kFlush);
    Vec acc(scalar_t(0));
    for (; i < stop; i += W) {
      const Vec diff = Vec::loadu(pred + i) - Vec::loadu(target + i);
      acc = acc + diff * diff;
      (diff * vscale).store(grad + i);
    }
    scalar_t lanes[W];
    acc.store(lanes);
    for (int64_t l = 0; l < W; ++l) total += lanes[l];
  }
  for (; i < n; ++i) {
    const scalar_t diff = pred[i] - target[i];
    total += static_cast<double>(diff * diff);
    grad[i] = diff * scale;
  }
  return total;
}

// A fresh multi-megabyte tensor costs more in page faults than the pass that fills
// it (the allocator hands big blocks back to the OS on free). A training loop asks
// for the same gradient every step, so the storage of the last few large gradients
// is kept and reused once nothing else references it: the tensor that .grad held
// has been dropped, and no view of it is alive.
constexpr int64_t kReuseBytes = int64_t(1) << 20;
constexpr size_t kReuseSlots = 2;

at::Tensor gradient_buffer(const at::Tensor& like) {
  const int64_t bytes = like.numel() * static_cast<int64_t>(like.element_size());
  if (bytes < kReuseBytes) return at::empty(like.sizes(), like.options());
  static std::mutex mutex;
  static std::deque<c10::Storage> slots;
  std::lock_guard<std::mutex> lock(mutex);
  for (const c10::Storage& storage : slots) {
    if (storage.use_count() == 1 && static_cast<int64_t>(storage.nbytes()) == bytes) {
      at::Tensor reused = at::empty({0}, like.options());
      reused.set_(storage, 0, like.sizes());
      return reused;
    }
  }
  at::Tensor fresh = at::empty(like.sizes(), like.options());
  slots.push_back(fresh.storage());
  if (slots.size() > kReuseSlots) slots.pop_front();
  return fresh;
}

std::tuple<at::Tensor, at::Tensor> mse_loss_fwd_cpu(const at::Tensor& pred_in,
                                                    const at::Tensor& target_in,
                                                    int64_t reduction) {
  const auto [pred, target] = prepare_mse(pred_in, target_in, reduction, c10::DeviceType::CPU);
  const int64_t n = pred.numel();
  at::Tensor grad = gradient_buffer(pred);
  at::Tensor loss = at::empty({}, pred.options());
  AT_DISPATCH_FLOATING_TYPES(pred.scalar_type(), "mse_loss_fwd_cpu", [&] {
    const scalar_t* p = pred.const_data_ptr<scalar_t>();
    const scalar_t* t = target.const_data_ptr<scalar_t>();
    scalar_t* g = grad.mutable_data_ptr<scalar_t>();
    // 2/N for the mean; an empty mean keeps 2 here and gives NaN below, as F.mse_loss.
    const scalar_t scale = static_cast<scalar_t>(
        reduction == kMean ? 2.0 / static_cast<double>(std::max<int64_t>(n, 1)) : 2.0);
    const int64_t blocks = ceil_div(n, kReduceBlock);
    std::vector<double> partial(blocks, 0.0);
    at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t start = b * kReduceBlock;
        const int64_t len = std::min(kReduceBlock, n - start);
        partial[b] = squared_error_block<scalar_t>(p + start, t + start, g + start, len, scale);
      }
    });
    double total = 0;
    for (double v : partial) total += v;
    if (reduction == kMean) total /= static_cast<double>(n);  // 0/0 is NaN for n == 0
    loss.fill_(static_cast<scalar_t>(total));
  });
  return {loss, grad};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfit, CPU, m) { m.impl("mse_loss_fwd", &mse_loss_fwd_cpu); }

}  // namespace pyfit
