// The argument checks and working tensors of every op (see arguments.h).
#include "arguments.h"

#include <ATen/MemoryOverlap.h>

#include "pyfit.h"

namespace pyfit {
namespace {

const char* device_name(c10::DeviceType device) {
  return device == c10::DeviceType::CUDA ? "CUDA" : "CPU";
}

// Every tensor of one call lives on the first one's device, and that device is
// the kernel's: checked first, so mixed devices are named as such.
void check_device(const at::Tensor& t, const std::string& name, const at::Tensor& first,
                  const std::string& first_name, c10::DeviceType device) {
  TORCH_CHECK(t.device() == first.device(), "all tensors of one call must be on one device: ",
              first_name, " is on ", first.device(), ", ", name, " on ", t.device());
  TORCH_CHECK(t.device().type() == device, name, " must be a ", device_name(device),
              " tensor for this kernel, got one on ", t.device());
}

void check_dtype_like(const at::Tensor& t, const std::string& name, const at::Tensor& ref,
                      const std::string& ref_name) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), name, " must have ", ref_name, "'s dtype ",
              ref.scalar_type(), ", got ", t.scalar_type());
}

void check_shape_like(const at::Tensor& t, const std::string& name, const at::Tensor& ref,
                      const std::string& ref_name) {
  TORCH_CHECK(t.sizes() == ref.sizes(), name, " must have ", ref_name, "'s shape ", ref.sizes(),
              ", got ", t.sizes());
}

// A tensor the op writes must own each of its elements: an expanded (stride 0)
// tensor cannot take the results, and finding out at write-back is too late.
void check_writable(const at::Tensor& t, const std::string& name) {
  TORCH_CHECK(at::has_internal_overlap(t) != at::MemOverlap::Yes, name,
              " is written by this op but several of its elements share memory (stride ",
              t.strides(), ", e.g. an expanded tensor); pass a tensor that owns its elements, "
              "e.g. .clone()");
}

std::string indexed(const char* name, size_t i) { return std::string(name) + "[" + std::to_string(i) + "]"; }

at::Tensor contiguous_or_undefined(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->contiguous() : at::Tensor();
}

}  // namespace

MseArgs prepare_mse(const at::Tensor& pred, const at::Tensor& target, int64_t reduction,
                    c10::DeviceType device) {
  check_reduction(reduction);
  check_device(pred, "pred", pred, "pred", device);
  check_device(target, "target", pred, "pred", device);
  check_floating(pred, "pred");
  check_dtype_like(target, "target", pred, "pred");
  check_shape_like(target, "target", pred, "pred");
  return MseArgs{pred.contiguous(), target.contiguous()};
}

SgdArgs prepare_sgd(at::TensorList params, at::TensorList grads, at::TensorList buffers,
                    const c10::List<bool>& first_step, double momentum, bool zero_grads,
                    c10::DeviceType device) {
  const size_t count = params.size();
  const bool use_buf = momentum != 0;
  TORCH_CHECK(grads.size() == count, "sgd_update_ takes one grad per param: expected ", count,
              " grads, got ", grads.size());
  TORCH_CHECK(!use_buf || buffers.size() == count,
              "with momentum, sgd_update_ takes one buffer per param: expected ", count,
              " buffers, got ", buffers.size());
  TORCH_CHECK(first_step.size() == count, "sgd_update_ takes one first_step flag per param: ",
              "expected ", count, ", got ", first_step.size());
  // all checks first: nothing is copied or written until every argument passed
  for (size_t i = 0; i < count; ++i) {
    const std::string p = indexed("params", i), g = indexed("grads", i);
    check_device(params[i], p, params[0], "params[0]", device);
    check_device(grads[i], g, params[0], "params[0]", device);
    // params of one call may mix float32 and float64, as torch.optim.SGD's may
    check_floating(params[i], p.c_str());
    check_dtype_like(grads[i], g, params[i], p);
    check_shape_like(grads[i], g, params[i], p);
    check_writable(params[i], p);
    if (zero_grads) check_writable(grads[i], g);
    if (use_buf) {
      const std::string b = indexed("momentum_buffers", i);
      check_device(buffers[i], b, params[0], "params[0]", device);
      check_dtype_like(buffers[i], b, params[i], p);
      check_shape_like(buffers[i], b, params[i], p);
      check_writable(buffers[i], b);
    }
  }
  SgdArgs work;
  work.params.reserve(count);
  work.grads.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    work.params.push_back(params[i].contiguous());
    work.grads.push_back(grads[i].contiguous());
    if (use_buf) work.buffers.push_back(buffers[i].contiguous());
  }
  return work;
}

void write_back_sgd(const SgdArgs& work, at::TensorList params, at::TensorList grads,
                    at::TensorList buffers, bool zero_grads) {
  for (size_t i = 0; i < work.params.size(); ++i) {
    if (!work.params[i].is_same(params[i])) params[i].copy_(work.params[i]);
    if (!work.buffers.empty() && !work.buffers[i].is_same(buffers[i]))
      buffers[i].copy_(work.buffers[i]);
    if (zero_grads && !work.grads[i].is_same(grads[i])) grads[i].zero_();
  }
}

LinearArgs prepare_linear(const at::Tensor& X, const at::Tensor& y, const at::Tensor& weight,
                          const std::optional<at::Tensor>& bias,
                          const std::optional<at::Tensor>& weight_buf,
                          const std::optional<at::Tensor>& bias_buf, double momentum,
                          int64_t reduction, c10::DeviceType device) {
  check_reduction(reduction);
  // (name, tensor) of every tensor argument that is present
  std::vector<std::pair<const char*, const at::Tensor*>> given{{"y", &y}, {"weight", &weight}};
  if (bias.has_value()) given.emplace_back("bias", &*bias);
  if (weight_buf.has_value()) given.emplace_back("weight_buf", &*weight_buf);
  if (bias_buf.has_value()) given.emplace_back("bias_buf", &*bias_buf);
  check_device(X, "X", X, "X", device);
  for (const auto& [name, t] : given) check_device(*t, name, X, "X", device);
  check_floating(X, "X");
  for (const auto& [name, t] : given) check_dtype_like(*t, name, X, "X");
  TORCH_CHECK(X.dim() == 2, "X must be 2-D (N, D), got shape ", X.sizes());
  TORCH_CHECK(weight.dim() == 2, "weight must be 2-D (K, D), got shape ", weight.sizes());
  const int64_t N = X.size(0), D = X.size(1), K = weight.size(0);
  TORCH_CHECK(weight.size(1) == D, "weight must have shape (K, ", D, ") for X of shape ",
              X.sizes(), ", got ", weight.sizes());
  check_shape(y, "y", {N, K});
  check_writable(weight, "weight");
  if (bias.has_value()) {
    check_shape(*bias, "bias", {K});
    check_writable(*bias, "bias");
  }
  const bool use_buf = momentum != 0;
  if (use_buf) {
    TORCH_CHECK(weight_buf.has_value(), "with momentum ", momentum,
                ", weight_buf (shaped like weight) is required, got None");
    check_shape(*weight_buf, "weight_buf", {K, D});
    check_writable(*weight_buf, "weight_buf");
    if (bias.has_value()) {
      TORCH_CHECK(bias_buf.has_value(), "with momentum ", momentum,
                  " and a bias, bias_buf (shaped like bias) is required, got None");
      check_shape(*bias_buf, "bias_buf", {K});
      check_writable(*bias_buf, "bias_buf");
    }
  }
  return LinearArgs{X.contiguous(),
                    y.contiguous(),
                    weight.contiguous(),
                    contiguous_or_undefined(bias),
                    use_buf ? contiguous_or_undefined(weight_buf) : at::Tensor(),
                    use_buf && bias.has_value() ? contiguous_or_undefined(bias_buf) : at::Tensor(),
                    N,
                    K,
                    D};
}

void write_back_linear(const LinearArgs& work, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias,
                       const std::optional<at::Tensor>& weight_buf,
                       const std::optional<at::Tensor>& bias_buf) {
  if (!work.weight.is_same(weight)) weight.copy_(work.weight);
  if (work.bias.defined() && !work.bias.is_same(*bias)) bias->copy_(work.bias);
  if (work.weight_buf.defined() && !work.weight_buf.is_same(*weight_buf))
    weight_buf->copy_(work.weight_buf);
  if (work.bias_buf.defined() && !work.bias_buf.is_same(*bias_buf))
    bias_buf->copy_(work.bias_buf);
}

at::Tensor prepare_lrs(const at::Tensor& lrs) {
  TORCH_CHECK(lrs.dim() == 1 && lrs.scalar_type() == at::kDouble && lrs.is_cpu(),
              "lrs must be a 1-D float64 CPU tensor (one learning rate per epoch), got ",
              lrs.dim(), "-D ", lrs.scalar_type(), " on ", lrs.device());
  return lrs.contiguous();
}

at::Tensor prepare_order(const std::optional<at::Tensor>& order_in, int64_t epochs, int64_t n,
                         const at::Device& device) {
  if (!order_in.has_value()) return at::Tensor();
  const at::Tensor& order = *order_in;
  TORCH_CHECK(order.is_cpu() || order.device() == device, "order must be on the CPU or on X's ",
              "device ", device, ", got ", order.device());
  TORCH_CHECK(order.scalar_type() == at::kLong, "order must be int64, got ", order.scalar_type());
  check_shape(order, "order", {epochs, n});
  if (order.numel() > 0) {
    const int64_t lo = order.min().item<int64_t>(), hi = order.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < n, "order must hold row indices in [0, ", n, "), got values in [",
                lo, ", ", hi, "]");
  }
  return order.to(device).contiguous();
}

}  // namespace pyfit
