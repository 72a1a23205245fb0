// The torch-facing side of pyfit's CUDA ops: argument checks and working tensors
// from the same code as the CPU kernels (../arguments.h), allocation and streams
// here, kernels in the torch-free .cu files (kernels.h). Built only when torch has
// CUDA.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>

#include "../arguments.h"
#include "../pyfit.h"
#include "kernels.h"

namespace pyfit {
namespace {

namespace k = ::pyfit::cuda;

// Only float32 and float64 reach here: prepare_* checked them.
k::DType dtype_of(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? k::DType::Float64 : k::DType::Float32;
}

void check_cuda(cudaError_t status, const char* what) {
  TORCH_CHECK(status == cudaSuccess, what, " failed: expected cudaSuccess, got ",
              cudaGetErrorString(status));
}

std::tuple<at::Tensor, at::Tensor> mse_loss_fwd_cuda(const at::Tensor& pred_in,
                                                     const at::Tensor& target_in,
                                                     int64_t reduction) {
  const auto [pred, target] = prepare_mse(pred_in, target_in, reduction, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(pred.device());
  const int64_t n = pred.numel();
  at::Tensor grad = at::empty(pred.sizes(), pred.options());
  at::Tensor loss = at::empty({}, pred.options());
  at::Tensor work = at::empty({k::mse_workspace_size(n)}, pred.options().dtype(at::kDouble));
  check_cuda(k::mse_loss_fwd(dtype_of(pred), pred.const_data_ptr(), target.const_data_ptr(),
                             grad.mutable_data_ptr(), loss.mutable_data_ptr(), n,
                             static_cast<int>(reduction), work.mutable_data_ptr<double>(),
                             c10::cuda::getCurrentCUDAStream()),
             "pyfit mse_loss_fwd kernel launch");
  return {loss, grad};
}

void sgd_update_cuda(at::TensorList params, at::TensorList grads, at::TensorList buffers,
                     const c10::List<bool>& first_step, double lr, double momentum,
                     double dampening, bool nesterov, double weight_decay, bool maximize,
                     bool zero_grads) {
  const SgdArgs work = prepare_sgd(params, grads, buffers, first_step, momentum, zero_grads,
                                   c10::DeviceType::CUDA);
  const size_t count = params.size();
  if (count == 0) return;
  const bool use_buf = momentum != 0;
  const c10::cuda::CUDAGuard guard(params[0].device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const k::SgdHyper hyper{lr, momentum, dampening, weight_decay, nesterov, maximize, zero_grads};
  // one launch per dtype present (float32, float64), each over all of its tensors
  std::vector<k::SgdChunk> chunks[2];
  for (size_t i = 0; i < count; ++i) {
    const int g = static_cast<int>(dtype_of(params[i]));
    const int64_t item = params[i].element_size();
    char* p = static_cast<char*>(work.params[i].data_ptr());
    char* gr = static_cast<char*>(work.grads[i].data_ptr());
    char* b = use_buf ? static_cast<char*>(work.buffers[i].data_ptr()) : nullptr;
    for (int64_t begin = 0; begin < params[i].numel(); begin += k::kSgdChunk) {
      const int64_t offset = begin * item;
      chunks[g].push_back(k::SgdChunk{p + offset, gr + offset, b ? b + offset : nullptr,
                                      std::min(k::kSgdChunk, params[i].numel() - begin),
                                      first_step.get(i) ? 1 : 0});
    }
  }
  for (int g = 0; g < 2; ++g) {
    if (chunks[g].empty()) continue;
    const int64_t bytes = static_cast<int64_t>(chunks[g].size() * sizeof(k::SgdChunk));
    at::Tensor table =
        at::empty({bytes}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
    std::memcpy(table.data_ptr(), chunks[g].data(), bytes);
    // The pinned block comes from torch's caching host allocator, which records the
    // non-blocking copy's stream and does not reuse the block before the copy is
    // done; nothing more is needed to keep it alive (record_stream is for device
    // memory and has no CPU kernel).
    at::Tensor device_table = table.to(params[0].device(), /*non_blocking=*/true);
    check_cuda(k::sgd_update(static_cast<k::DType>(g),
                             static_cast<const k::SgdChunk*>(device_table.data_ptr()),
                             static_cast<int64_t>(chunks[g].size()), hyper, stream),
               "pyfit sgd_update_ kernel launch");
  }
  write_back_sgd(work, params, grads, buffers, zero_grads);
}

void* data_or_null(const at::Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

// The CUDA linear kernels keep a tile of residuals, (rows, K), in shared memory;
// more outputs than that does not fit are refused before anything runs.
void check_linear_size(const LinearArgs& a) {
  TORCH_CHECK(a.K <= k::kLinearMaxOutputs, "the CUDA linear kernel takes at most ",
              k::kLinearMaxOutputs, " outputs (K, rows of weight), got ", a.K,
              "; fit this model on the CPU or with pyfit's autograd path");
}

// The device buffers of one call's steps, reused by each; step() runs `len` rows
// (from `start`, or rows[start...] when `rows` is given) through one SGD step.
struct LinearRun {
  const LinearArgs& a;
  at::Tensor partials, scratch, state, step_loss;
  cudaStream_t stream;

  LinearRun(const LinearArgs& args, int64_t max_rows)
      : a(args),
        partials(at::empty({k::linear_partials_size(max_rows, a.K, a.D)},
                           a.X.options().dtype(at::kDouble))),
        scratch(at::empty({2 * (a.K * a.D + a.K)}, a.X.options())),
        // LinearFitState {double epoch_total, int stopped}, zeroed
        state(at::zeros({2}, a.X.options().dtype(at::kDouble))),
        step_loss(at::full({}, std::numeric_limits<double>::quiet_NaN(), a.X.options())),
        stream(c10::cuda::getCurrentCUDAStream()) {}

  void step(const k::SgdHyper& hyper, bool first, int64_t reduction, const int64_t* rows,
            int64_t start, int64_t len, double share, bool end_of_epoch, void* epoch_loss) {
    const int64_t item = a.X.element_size();
    const char* X = static_cast<const char*>(a.X.const_data_ptr());
    const char* y = static_cast<const char*>(a.y.const_data_ptr());
    check_cuda(k::linear_step(dtype_of(a.X), rows ? X : X + start * a.D * item,
                              rows ? y : y + start * a.K * item, rows ? rows + start : nullptr,
                              len, a.K, a.D, a.weight.data_ptr(), data_or_null(a.bias),
                              data_or_null(a.weight_buf), data_or_null(a.bias_buf), hyper, first,
                              static_cast<int>(reduction), share, end_of_epoch,
                              partials.mutable_data_ptr<double>(), scratch.mutable_data_ptr(),
                              reinterpret_cast<k::LinearFitState*>(state.mutable_data_ptr()),
                              step_loss.mutable_data_ptr(), epoch_loss, stream),
               "pyfit linear step kernel launch");
  }
};

at::Tensor linear_step_cuda(const at::Tensor& X, const at::Tensor& y, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias,
                            const std::optional<at::Tensor>& weight_buf,
                            const std::optional<at::Tensor>& bias_buf, double lr,
                            double momentum, double dampening, bool nesterov,
                            double weight_decay, bool maximize, bool first_step,
                            int64_t reduction) {
  const LinearArgs a = prepare_linear(X, y, weight, bias, weight_buf, bias_buf, momentum,
                                      reduction, c10::DeviceType::CUDA);
  check_linear_size(a);
  const c10::cuda::CUDAGuard guard(X.device());
  LinearRun run(a, a.N);
  const k::SgdHyper hyper{lr, momentum, dampening, weight_decay, nesterov, maximize, 0};
  // zero rows run too: the loss is NaN (mean, no update) or 0 (sum, decay still applies),
  // as on the CPU
  at::Tensor epoch_loss = at::empty({}, X.options());
  run.step(hyper, first_step, reduction, nullptr, 0, a.N, 1.0, true, epoch_loss.mutable_data_ptr());
  write_back_linear(a, weight, bias, weight_buf, bias_buf);
  return run.step_loss;
}

at::Tensor linear_fit_cuda(const at::Tensor& X, const at::Tensor& y, const at::Tensor& weight,
                           const std::optional<at::Tensor>& bias,
                           const std::optional<at::Tensor>& weight_buf,
                           const std::optional<at::Tensor>& bias_buf, const at::Tensor& lrs_in,
                           const std::optional<at::Tensor>& order_in, int64_t batch_size,
                           double momentum, double dampening, bool nesterov, double weight_decay,
                           bool maximize, bool first_step, int64_t reduction) {
  const LinearArgs a = prepare_linear(X, y, weight, bias, weight_buf, bias_buf, momentum,
                                      reduction, c10::DeviceType::CUDA);
  check_linear_size(a);
  const at::Tensor lrs = prepare_lrs(lrs_in);
  const int64_t epochs = lrs.numel(), n = a.N;
  TORCH_CHECK(n > 0 || epochs == 0, "linear_fit_ needs at least one row, got X of shape ",
              X.sizes());
  const c10::cuda::CUDAGuard guard(X.device());
  const at::Tensor order = prepare_order(order_in, epochs, n, X.device());
  const int64_t batch = std::max<int64_t>(1, batch_size <= 0 ? n : std::min(batch_size, n));
  at::Tensor losses = at::full({epochs}, std::numeric_limits<double>::quiet_NaN(), X.options());
  LinearRun run(a, batch);
  const double* lr = lrs.const_data_ptr<double>();
  const int64_t* rows = order.defined() ? order.const_data_ptr<int64_t>() : nullptr;
  char* epoch_losses = static_cast<char*>(losses.mutable_data_ptr());
  bool first = first_step;
  // the fit state lives on the device: the epoch loop queues kernels without syncing
  for (int64_t e = 0; e < epochs; ++e) {
    const k::SgdHyper hyper{lr[e], momentum, dampening, weight_decay, nesterov, maximize, 0};
    for (int64_t start = 0; start < n; start += batch) {
      const int64_t len = std::min(batch, n - start);
      const double share = reduction == kMean ? static_cast<double>(len) / n : 1.0;
      run.step(hyper, first, reduction, rows ? rows + e * n : nullptr, start, len, share,
               start + len >= n, epoch_losses + e * X.element_size());
      first = false;
    }
  }
  write_back_linear(a, weight, bias, weight_buf, bias_buf);
  return losses;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfit, CUDA, m) {
  m.impl("mse_loss_fwd", &mse_loss_fwd_cuda);
  m.impl("sgd_update_", &sgd_update_cuda);
  m.impl("linear_step_", &linear_step_cuda);
  m.impl("linear_fit_", &linear_fit_cuda);
}

}  // namespace pyfit
