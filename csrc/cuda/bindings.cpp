// The torch-facing side of pyfit's CUDA ops: checks, allocation and streams here,
// kernels in the torch-free .cu files (kernels.h). Built only when torch has CUDA.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstring>

#include "../pyfit.h"
#include "kernels.h"

namespace pyfit {
namespace {

namespace k = ::pyfit::cuda;

k::DType dtype_of(const at::Tensor& t, bool reduced_ok, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat: return k::DType::Float32;
    case at::kDouble: return k::DType::Float64;
    case at::kHalf: if (reduced_ok) return k::DType::Float16; break;
    case at::kBFloat16: if (reduced_ok) return k::DType::BFloat16; break;
    default: break;
  }
  TORCH_CHECK(false, name, " must be float32 or float64", reduced_ok ? " (or float16/bfloat16)" : "",
              ", got ", t.scalar_type());
  return k::DType::Float32;  // not reached: the check above throws
}

void check_cuda(cudaError_t status, const char* what) {
  TORCH_CHECK(status == cudaSuccess, what, " failed: expected cudaSuccess, got ",
              cudaGetErrorString(status));
}

std::tuple<at::Tensor, at::Tensor> mse_loss_fwd_cuda(const at::Tensor& pred_in,
                                                     const at::Tensor& target_in,
                                                     int64_t reduction) {
  check_reduction(reduction);
  check_like(target_in, "target", pred_in, "pred");
  TORCH_CHECK(target_in.sizes() == pred_in.sizes(), "target must have pred's shape ",
              pred_in.sizes(), ", got ", target_in.sizes());
  const k::DType dtype = dtype_of(pred_in, false, "pred");
  const c10::cuda::CUDAGuard guard(pred_in.device());
  const at::Tensor pred = pred_in.contiguous(), target = target_in.contiguous();
  const int64_t n = pred.numel();
  at::Tensor grad = at::empty(pred.sizes(), pred.options());
  at::Tensor loss = at::empty({}, pred.options());
  at::Tensor work = at::empty({k::mse_workspace_size(n)}, pred.options().dtype(at::kDouble));
  check_cuda(k::mse_loss_fwd(dtype, pred.const_data_ptr(), target.const_data_ptr(),
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
  const size_t count = params.size();
  const bool use_buf = momentum != 0;
  TORCH_CHECK(grads.size() == count, "sgd_update_ takes one grad per param: expected ", count,
              " grads, got ", grads.size());
  TORCH_CHECK(!use_buf || buffers.size() == count,
              "with momentum, sgd_update_ takes one buffer per param: expected ", count,
              " buffers, got ", buffers.size());
  TORCH_CHECK(first_step.size() == count, "sgd_update_ takes one first_step flag per param: ",
              "expected ", count, ", got ", first_step.size());
  if (count == 0) return;
  const c10::cuda::CUDAGuard guard(params[0].device());
  const k::SgdHyper hyper{lr, momentum, dampening, weight_decay, nesterov, maximize, zero_grads};
  std::vector<at::Tensor> wp(count), wg(count), wb(count);
  // one launch per dtype present, each over all of that dtype's tensors
  std::vector<std::vector<k::SgdSegment>> groups(4);
  std::vector<int64_t> totals(4, 0);
  for (size_t i = 0; i < count; ++i) {
    check_like(params[i], "params[i]", params[0], "params[0]");
    check_like(grads[i], "grads[i]", params[i], "params[i]");
    TORCH_CHECK(grads[i].sizes() == params[i].sizes(), "grads[", i, "] must have params[", i,
                "]'s shape ", params[i].sizes(), ", got ", grads[i].sizes());
    wp[i] = params[i].contiguous();
    wg[i] = grads[i].contiguous();
    if (use_buf) {
      check_like(buffers[i], "momentum_buffers[i]", params[i], "params[i]");
      TORCH_CHECK(buffers[i].sizes() == params[i].sizes(), "momentum_buffers[", i,
                  "] must have params[", i, "]'s shape ", params[i].sizes(), ", got ",
                  buffers[i].sizes());
      wb[i] = buffers[i].contiguous();
    }
    const int g = static_cast<int>(dtype_of(params[i], true, "params[i]"));
    groups[g].push_back(k::SgdSegment{wp[i].data_ptr(), wg[i].data_ptr(),
                                      use_buf ? wb[i].data_ptr() : nullptr, totals[g],
                                      params[i].numel(), first_step.get(i) ? 1 : 0});
    totals[g] += params[i].numel();
  }
  for (int g = 0; g < 4; ++g) {
    if (groups[g].empty() || totals[g] == 0) continue;
    const int64_t bytes = static_cast<int64_t>(groups[g].size() * sizeof(k::SgdSegment));
    at::Tensor table = at::empty({bytes}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
    std::memcpy(table.data_ptr(), groups[g].data(), bytes);
    at::Tensor device_table = table.to(params[0].device(), /*non_blocking=*/true);
    check_cuda(k::sgd_update(static_cast<k::DType>(g),
                             static_cast<const k::SgdSegment*>(device_table.data_ptr()),
                             static_cast<int64_t>(groups[g].size()), totals[g], hyper,
                             c10::cuda::getCurrentCUDAStream()),
               "pyfit sgd_update_ kernel launch");
    // keep the pinned table alive until the copy has been consumed
    table.record_stream(c10::cuda::getCurrentCUDAStream());
  }
  for (size_t i = 0; i < count; ++i) {
    if (!wp[i].is_same(params[i])) params[i].copy_(wp[i]);
    if (use_buf && !wb[i].is_same(buffers[i])) buffers[i].copy_(wb[i]);
    if (zero_grads && !wg[i].is_same(grads[i])) grads[i].zero_();
  }
}

struct LinearCuda {
  at::Tensor X, y, w, b, wb, bb;
  int64_t N, K, D;
};

LinearCuda prepare_cuda(const at::Tensor& X, const at::Tensor& y, const at::Tensor& weight,
                        const std::optional<at::Tensor>& bias,
                        const std::optional<at::Tensor>& weight_buf,
                        const std::optional<at::Tensor>& bias_buf, double momentum,
                        int64_t reduction) {
  check_reduction(reduction);
  dtype_of(X, false, "X");
  TORCH_CHECK(X.dim() == 2, "X must be 2-D (N, D), got shape ", X.sizes());
  TORCH_CHECK(weight.dim() == 2, "weight must be 2-D (K, D), got shape ", weight.sizes());
  check_like(weight, "weight", X, "X");
  check_like(y, "y", X, "X");
  const int64_t N = X.size(0), D = X.size(1), K = weight.size(0);
  TORCH_CHECK(weight.size(1) == D, "weight must have shape (K, ", D, ") for X of shape ",
              X.sizes(), ", got ", weight.sizes());
  check_shape(y, "y", {N, K});
  LinearCuda a{X.contiguous(), y.contiguous(), weight.contiguous(), {}, {}, {}, N, K, D};
  if (bias.has_value()) {
    check_like(*bias, "bias", X, "X");
    check_shape(*bias, "bias", {K});
    a.b = bias->contiguous();
  }
  if (momentum != 0) {
    TORCH_CHECK(weight_buf.has_value(), "with momentum ", momentum,
                ", weight_buf (shaped like weight) is required, got None");
    check_like(*weight_buf, "weight_buf", X, "X");
    check_shape(*weight_buf, "weight_buf", {K, D});
    a.wb = weight_buf->contiguous();
    if (bias.has_value()) {
      TORCH_CHECK(bias_buf.has_value(), "with momentum ", momentum,
                  " and a bias, bias_buf (shaped like bias) is required, got None");
      check_like(*bias_buf, "bias_buf", X, "X");
      check_shape(*bias_buf, "bias_buf", {K});
      a.bb = bias_buf->contiguous();
    }
  }
  return a;
}

void write_back_cuda(const LinearCuda& a, const at::Tensor& weight,
                     const std::optional<at::Tensor>& bias,
                     const std::optional<at::Tensor>& weight_buf,
                     const std::optional<at::Tensor>& bias_buf) {
  if (!a.w.is_same(weight)) weight.copy_(a.w);
  if (a.b.defined() && !a.b.is_same(*bias)) bias->copy_(a.b);
  if (a.wb.defined() && !a.wb.is_same(*weight_buf)) weight_buf->copy_(a.wb);
  if (a.bb.defined() && !a.bb.is_same(*bias_buf)) bias_buf->copy_(a.bb);
}

void* ptr_or_null(const at::Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

// Runs the steps of `epochs` epochs on the device; losses (E,) on X's device.
at::Tensor run_linear(const LinearCuda& a, const at::Tensor& lrs, const at::Tensor& order,
                      int64_t batch, double momentum, double dampening, bool nesterov,
                      double weight_decay, bool maximize, bool first_step, int64_t reduction,
                      at::Tensor* last_step_loss) {
  const int64_t epochs = lrs.numel(), n = a.N;
  const k::DType dtype = dtype_of(a.X, false, "X");
  at::Tensor losses = at::full({epochs}, std::numeric_limits<double>::quiet_NaN(), a.X.options());
  at::Tensor step_loss = at::full({}, std::numeric_limits<double>::quiet_NaN(), a.X.options());
  at::Tensor partials = at::empty({k::linear_partials_size(batch, a.K, a.D)},
                                  a.X.options().dtype(at::kDouble));
  at::Tensor scratch = at::empty({2 * (a.K * a.D + a.K)}, a.X.options());
  // LinearFitState {double, int} zeroed: epoch_total 0, not stopped
  at::Tensor state = at::zeros({2}, a.X.options().dtype(at::kDouble));
  const double* lr = lrs.const_data_ptr<double>();
  const int64_t* rows = order.defined() ? order.const_data_ptr<int64_t>() : nullptr;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  bool first = first_step;
  for (int64_t e = 0; e < epochs; ++e) {
    const k::SgdHyper hyper{lr[e], momentum, dampening, weight_decay, nesterov, maximize, 0};
    for (int64_t start = 0; start < n; start += batch) {
      const int64_t len = std::min(batch, n - start);
      const double share = reduction == kMean ? static_cast<double>(len) / n : 1.0;
      const char* X = static_cast<const char*>(a.X.const_data_ptr());
      const char* y = static_cast<const char*>(a.y.const_data_ptr());
      const int64_t item = a.X.element_size();
      check_cuda(k::linear_step(
                     dtype, rows ? X : X + start * a.D * item, rows ? y : y + start * a.K * item,
                     rows ? rows + e * n + start : nullptr, len, a.K, a.D, a.w.data_ptr(),
                     ptr_or_null(a.b), ptr_or_null(a.wb), ptr_or_null(a.bb), hyper, first,
                     static_cast<int>(reduction), share, start + len >= n,
                     partials.mutable_data_ptr<double>(), scratch.mutable_data_ptr(),
                     reinterpret_cast<k::LinearFitState*>(state.mutable_data_ptr()),
                     step_loss.mutable_data_ptr(), static_cast<char*>(losses.mutable_data_ptr()) + e * item,
                     stream),
                 "pyfit linear step kernel launch");
      first = false;
    }
  }
  if (last_step_loss) *last_step_loss = step_loss;
  return losses;
}

at::Tensor linear_step_cuda(const at::Tensor& X, const at::Tensor& y, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias,
                            const std::optional<at::Tensor>& weight_buf,
                            const std::optional<at::Tensor>& bias_buf, double lr,
                            double momentum, double dampening, bool nesterov,
                            double weight_decay, bool maximize, bool first_step,
                            int64_t reduction) {
  const c10::cuda::CUDAGuard guard(X.device());
  const LinearCuda a = prepare_cuda(X, y, weight, bias, weight_buf, bias_buf, momentum, reduction);
  at::Tensor lrs = at::full({1}, lr, at::TensorOptions().dtype(at::kDouble));
  at::Tensor loss;
  if (a.N == 0) {  // no rows: the loss is NaN (mean) or 0 (sum) and no kernel needs to run
    TORCH_CHECK(reduction == kMean, "linear_step_ on CUDA needs at least one row for reduction sum");
    return at::full({}, std::numeric_limits<double>::quiet_NaN(), X.options());
  }
  run_linear(a, lrs, at::Tensor(), a.N, momentum, dampening, nesterov, weight_decay, maximize,
             first_step, reduction, &loss);
  write_back_cuda(a, weight, bias, weight_buf, bias_buf);
  return loss;
}

at::Tensor linear_fit_cuda(const at::Tensor& X, const at::Tensor& y, const at::Tensor& weight,
                           const std::optional<at::Tensor>& bias,
                           const std::optional<at::Tensor>& weight_buf,
                           const std::optional<at::Tensor>& bias_buf, const at::Tensor& lrs_in,
                           const std::optional<at::Tensor>& order_in, int64_t batch_size,
                           double momentum, double dampening, bool nesterov, double weight_decay,
                           bool maximize, bool first_step, int64_t reduction) {
  const c10::cuda::CUDAGuard guard(X.device());
  const LinearCuda a = prepare_cuda(X, y, weight, bias, weight_buf, bias_buf, momentum, reduction);
  TORCH_CHECK(lrs_in.dim() == 1 && lrs_in.scalar_type() == at::kDouble && lrs_in.is_cpu(),
              "lrs must be a 1-D float64 CPU tensor (one learning rate per epoch), got ",
              lrs_in.dim(), "-D ", lrs_in.scalar_type(), " on ", lrs_in.device());
  const at::Tensor lrs = lrs_in.contiguous();
  const int64_t epochs = lrs.numel(), n = a.N;
  TORCH_CHECK(n > 0 || epochs == 0, "linear_fit_ needs at least one row, got X of shape ",
              X.sizes());
  at::Tensor order;
  if (order_in.has_value()) {
    TORCH_CHECK(order_in->scalar_type() == at::kLong, "order must be int64, got ",
                order_in->scalar_type());
    check_shape(*order_in, "order", {epochs, n});
    order = order_in->to(X.device()).contiguous();
    if (order.numel() > 0) {
      const int64_t lo = order.min().item<int64_t>(), hi = order.max().item<int64_t>();
      TORCH_CHECK(lo >= 0 && hi < n, "order must hold row indices in [0, ", n,
                  "), got values in [", lo, ", ", hi, "]");
    }
  }
  const int64_t batch = batch_size <= 0 ? n : std::min(batch_size, n);
  at::Tensor losses = run_linear(a, lrs, order, std::max<int64_t>(batch, 1), momentum, dampening,
                                 nesterov, weight_decay, maximize, first_step, reduction, nullptr);
  write_back_cuda(a, weight, bias, weight_buf, bias_buf);
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
