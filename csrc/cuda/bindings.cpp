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
#include "../update_rules.h"
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
  const OptimizerSettings settings =
      make_sgd_settings(momentum, dampening, nesterov, weight_decay, maximize);
  const bool use_buf = momentum != 0;
  const c10::cuda::CUDAGuard guard(params[0].device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
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
                             static_cast<int64_t>(chunks[g].size()), settings, lr,
                             zero_grads ? 1 : 0, stream),
               "pyfit sgd_update_ kernel launch");
  }
  write_back_sgd(work, params, grads, buffers, zero_grads);
}

// The CUDA linear kernels keep a tile of residuals, (rows, K), in shared memory;
// more outputs than that does not fit are refused before anything runs.
void check_linear_size(int64_t K) {
  TORCH_CHECK(K <= k::kLinearMaxOutputs, "the CUDA linear kernel takes at most ",
              k::kLinearMaxOutputs, " outputs (K, rows of weight), got ", K,
              "; fit this model on the CPU or with pyfit's autograd path");
}

// The epochs of a checked fit (linear_fit_kernel in ../arguments.h calls it).
at::Tensor run_linear_fit_cuda(const LinearArgs& a) {
  check_linear_size(a.K);
  const at::Tensor& X = a.X;
  const c10::cuda::CUDAGuard guard(X.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t n = a.N, batch = a.batch;
  const int per_param = a.settings.state_per_param();
  at::Tensor losses =
      at::full({a.epochs}, std::numeric_limits<double>::quiet_NaN(), X.options());
  if (a.epochs == 0) return losses;
  k::LinearTargets targets{};
  targets.count = static_cast<int>(a.params.size());
  for (int i = 0; i < targets.count; ++i) {
    targets.param[i] = a.params[i].data_ptr();
    for (int s = 0; s < per_param; ++s) targets.state[i][s] = a.state[i * per_param + s].data_ptr();
  }
  at::Tensor partials = at::empty({k::linear_partials_size(batch, a.K, a.D)},
                                  X.options().dtype(at::kDouble));
  at::Tensor scratch = at::empty({k::linear_scratch_size(a.K, a.D, per_param)}, X.options());
  // LinearFitState {double epoch_total, int stopped, int bad}, zeroed
  at::Tensor fit = at::zeros({2}, X.options().dtype(at::kDouble));
  const double* lr = a.lrs.const_data_ptr<double>();
  const int64_t* rows = a.order.defined() ? a.order.const_data_ptr<int64_t>() : nullptr;
  const int64_t item = X.element_size();
  const char* Xp = static_cast<const char*>(a.X.const_data_ptr());
  const char* yp = static_cast<const char*>(a.y.const_data_ptr());
  char* epoch_losses = static_cast<char*>(losses.mutable_data_ptr());
  int64_t t = a.step;  // steps taken so far
  // the fit state lives on the device: the epoch loop queues kernels without syncing
  for (int64_t e = 0; e < a.epochs; ++e) {
    for (int64_t start = 0; start < n; start += batch) {
      const int64_t len = std::min(batch, n - start);
      const double share = a.mean ? static_cast<double>(len) / n : 1.0;
      // without an order a batch is a slice of X; with one, indices into X
      check_cuda(k::linear_step(dtype_of(a.X), rows ? Xp : Xp + start * a.D * item,
                                rows ? yp : yp + start * a.K * item,
                                rows ? rows + e * n + start : nullptr, len, a.K, a.D, targets,
                                a.loss, a.delta, a.mean ? 1 : 0, a.settings,
                                step_scalars(a.settings, lr[e], ++t), share, start + len >= n,
                                partials.mutable_data_ptr<double>(), scratch.mutable_data_ptr(),
                                reinterpret_cast<k::LinearFitState*>(fit.mutable_data_ptr()),
                                epoch_losses + e * item, stream),
                 "pyfit linear_fit_ kernel launch");
    }
  }
  return losses;
}

// The sums of a checked linear_sums call (linear_sums_kernel in ../arguments.h calls it).
at::Tensor run_linear_sums_cuda(const LinearSumsArgs& a) {
  check_linear_size(a.K);
  const c10::cuda::CUDAGuard guard(a.X.device());
  const at::TensorOptions doubles = a.X.options().dtype(at::kDouble);
  at::Tensor partials = at::empty({k::linear_partials_size(a.n, a.K, a.D)}, doubles);
  at::Tensor total = at::empty({1 + a.K + a.K * a.D}, doubles);
  check_cuda(k::linear_sums(dtype_of(a.X), a.X.const_data_ptr(), a.y.const_data_ptr(),
                            a.rows.defined() ? a.rows.const_data_ptr<int64_t>() : nullptr, a.n,
                            a.K, a.D, a.params[0].const_data_ptr(),
                            a.params.size() > 1 ? a.params[1].const_data_ptr() : nullptr, a.loss,
                            a.delta, partials.mutable_data_ptr<double>(),
                            total.mutable_data_ptr<double>(), c10::cuda::getCurrentCUDAStream()),
             "pyfit linear_sums kernel launch");
  return total;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfit, CUDA, m) {
  m.impl("mse_loss_fwd", &mse_loss_fwd_cuda);
  m.impl("sgd_update_", &sgd_update_cuda);
  m.impl("linear_fit_", &linear_fit_kernel<c10::DeviceType::CUDA, &run_linear_fit_cuda>);
  m.impl("linear_sums", &linear_sums_kernel<c10::DeviceType::CUDA, &run_linear_sums_cuda>);
}

}  // namespace pyfit
