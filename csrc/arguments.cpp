// The argument checks and working tensors of every op (see arguments.h).
#include "arguments.h"

#include <ATen/MemoryOverlap.h>

#include <cmath>
#include <string>

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

namespace {

constexpr const char* kSettingNames[kSettingCount] = {
    "momentum", "dampening", "nesterov", "weight_decay", "maximize", "beta1", "beta2",
    "eps",      "amsgrad",   "decoupled_weight_decay",  "alpha",    "centered", "lr_decay"};

const char* optimizer_name(Optimizer optimizer) {
  switch (optimizer) {
    case Optimizer::Sgd: return "sgd";
    case Optimizer::Adam: return "adam";
    case Optimizer::Rmsprop: return "rmsprop";
    case Optimizer::Adagrad: return "adagrad";
  }
  return "?";
}

// The names of one param's state tensors, in order (see OptimizerSettings).
std::string state_layout(const OptimizerSettings& s) {
  switch (s.optimizer) {
    case Optimizer::Sgd: return s.momentum != 0 ? "momentum_buffer" : "none without momentum";
    case Optimizer::Adam: return s.amsgrad ? "exp_avg, exp_avg_sq, max_exp_avg_sq" : "exp_avg, exp_avg_sq";
    case Optimizer::Rmsprop:
      return std::string("square_avg") + (s.momentum > 0 ? ", momentum_buffer" : "") +
             (s.centered ? ", grad_avg" : "");
    case Optimizer::Adagrad: return "sum";
  }
  return "?";
}

}  // namespace

OptimizerSettings make_optimizer_settings(int64_t optimizer, c10::ArrayRef<double> v) {
  TORCH_CHECK(optimizer >= 0 && optimizer <= 3, "optimizer must be 0 (sgd), 1 (adam), ",
              "2 (rmsprop) or 3 (adagrad), got ", optimizer);
  TORCH_CHECK(v.size() == kSettingCount, "settings must hold ", int(kSettingCount),
              " floats (momentum, dampening, nesterov, weight_decay, maximize, beta1, beta2, eps, "
              "amsgrad, decoupled_weight_decay, alpha, centered, lr_decay), got ", v.size());
  for (int i = 0; i < kSettingCount; ++i) {
    TORCH_CHECK(std::isfinite(v[i]), "settings[", i, "] (", kSettingNames[i],
                ") must be finite, got ", v[i]);
  }
  for (int i : {kNesterov, kMaximize, kAmsgrad, kDecoupledWeightDecay, kCentered}) {
    TORCH_CHECK(v[i] == 0 || v[i] == 1, "settings[", i, "] (", kSettingNames[i],
                ") is a flag and must be 0 or 1, got ", v[i]);
  }
  for (int i : {kMomentum, kWeightDecay, kEps, kAlpha, kLrDecay}) {
    TORCH_CHECK(v[i] >= 0, "settings[", i, "] (", kSettingNames[i], ") must be >= 0, got ", v[i]);
  }
  for (int i : {kBeta1, kBeta2}) {
    TORCH_CHECK(v[i] >= 0 && v[i] < 1, "settings[", i, "] (", kSettingNames[i],
                ") must be in [0, 1), got ", v[i]);
  }
  const OptimizerSettings s{static_cast<Optimizer>(optimizer),
                            v[kMomentum],
                            v[kDampening],
                            v[kWeightDecay],
                            v[kNesterov] != 0,
                            v[kMaximize] != 0,
                            v[kBeta1],
                            v[kBeta2],
                            v[kEps],
                            v[kAmsgrad] != 0,
                            v[kDecoupledWeightDecay] != 0,
                            v[kAlpha],
                            v[kCentered] != 0,
                            v[kLrDecay]};
  // as torch.optim.SGD refuses it
  TORCH_CHECK(!(s.optimizer == Optimizer::Sgd && s.nesterov) ||
                  (s.momentum > 0 && s.dampening == 0),
              "nesterov momentum needs momentum > 0 and dampening 0, got momentum ", s.momentum,
              " and dampening ", s.dampening);
  return s;
}

OptimizerSettings make_sgd_settings(double momentum, double dampening, bool nesterov,
                                    double weight_decay, bool maximize) {
  // No range checks: sgd_update_ computes what torch's functional sgd computes for any
  // numbers, as a param group changed after torch.optim.SGD checked it may hold
  // (nesterov with no momentum is then plain SGD, as in torch)
  OptimizerSettings s{};
  s.optimizer = Optimizer::Sgd;
  s.momentum = momentum;
  s.dampening = dampening;
  s.nesterov = nesterov;
  s.weight_decay = weight_decay;
  s.maximize = maximize;
  return s;
}

namespace {

void check_loss(int64_t loss, double delta) {
  TORCH_CHECK(loss >= 0 && loss <= 2, "loss must be 0 (squared), 1 (absolute) or 2 (huber), got ",
              loss);
  TORCH_CHECK(loss != static_cast<int64_t>(Loss::Huber) || (std::isfinite(delta) && delta > 0),
              "delta must be a finite number > 0 for the huber loss, got ", delta);
}

struct LinearModelShape {
  int64_t N, K, D;
};

// X (N, D), y (N, K), params [weight (K, D)] or [weight, bias (K,)]: one device
// (the kernel's) and one floating dtype. Writability is the caller's concern.
LinearModelShape check_linear_model(const at::Tensor& X, const at::Tensor& y,
                                    at::TensorList params, c10::DeviceType device) {
  TORCH_CHECK(params.size() == 1 || params.size() == 2,
              "params must be [weight] or [weight, bias], got ", params.size(), " tensors");
  const at::Tensor& weight = params[0];
  check_device(X, "X", X, "X", device);
  check_device(y, "y", X, "X", device);
  for (size_t i = 0; i < params.size(); ++i) check_device(params[i], indexed("params", i), X, "X", device);
  check_floating(X, "X");
  check_dtype_like(y, "y", X, "X");
  for (size_t i = 0; i < params.size(); ++i) check_dtype_like(params[i], indexed("params", i), X, "X");
  TORCH_CHECK(X.dim() == 2, "X must be 2-D (N, D), got shape ", X.sizes());
  TORCH_CHECK(weight.dim() == 2, "weight (params[0]) must be 2-D (K, D), got shape ",
              weight.sizes());
  const int64_t N = X.size(0), D = X.size(1), K = weight.size(0);
  TORCH_CHECK(weight.size(1) == D, "weight (params[0]) must have shape (K, ", D,
              ") for X of shape ", X.sizes(), ", got ", weight.sizes());
  check_shape(y, "y", {N, K});
  if (params.size() == 2) check_shape(params[1], "bias (params[1])", {K});
  return {N, K, D};
}

// Row indices: int64 on the CPU or on X's device.
void check_index_tensor(const at::Tensor& indices, const char* name, const at::Device& device) {
  TORCH_CHECK(indices.is_cpu() || indices.device() == device, name,
              " must be on the CPU or on X's device ", device, ", got ", indices.device());
  TORCH_CHECK(indices.scalar_type() == at::kLong, name, " must be int64, got ",
              indices.scalar_type());
}

// Every index names one of n rows (a pass over the indices, not over the data).
void check_index_values(const at::Tensor& indices, const char* name, int64_t n) {
  if (indices.numel() > 0) {
    const int64_t lo = indices.min().item<int64_t>(), hi = indices.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < n, name, " must hold row indices in [0, ", n,
                "), got values in [", lo, ", ", hi, "]");
  }
}

// t (rows, cols) itself where each row is contiguous and rows are at least cols
// apart (on the CPU only, whose kernel takes a row stride), else a contiguous copy.
at::Tensor rows_in_place(const at::Tensor& t, c10::DeviceType device) {
  const bool row_strided = device == c10::DeviceType::CPU &&
                           (t.size(1) <= 1 || t.stride(1) == 1) && t.stride(0) >= t.size(1);
  return row_strided ? t : t.contiguous();
}

// The distance between rows of a tensor rows_in_place returned.
int64_t row_stride(const at::Tensor& t) {
  return t.is_contiguous() ? t.size(1) : t.stride(0);
}

}  // namespace

LinearArgs prepare_linear(const at::Tensor& X, const at::Tensor& y, at::TensorList params,
                          at::TensorList state, const at::Tensor& lrs,
                          const std::optional<at::Tensor>& order, int64_t batch_size,
                          int64_t loss, int64_t reduction, double delta, int64_t optimizer,
                          c10::ArrayRef<double> settings, int64_t step, c10::DeviceType device) {
  check_loss(loss, delta);
  check_reduction(reduction);
  const OptimizerSettings s = make_optimizer_settings(optimizer, settings);
  const LinearModelShape shape = check_linear_model(X, y, params, device);
  const int64_t N = shape.N, K = shape.K, D = shape.D;
  const int64_t per_param = s.state_per_param();
  TORCH_CHECK(state.size() == params.size() * per_param, "state must hold ", per_param,
              " tensor(s) per param for ", optimizer_name(s.optimizer), " (", state_layout(s),
              "), ", params.size() * per_param, " for ", params.size(), " param(s), got ",
              state.size());
  for (size_t i = 0; i < state.size(); ++i) check_device(state[i], indexed("state", i), X, "X", device);
  for (size_t i = 0; i < state.size(); ++i) check_dtype_like(state[i], indexed("state", i), X, "X");
  for (size_t i = 0; i < params.size(); ++i) check_writable(params[i], indexed("params", i));
  for (size_t i = 0; i < state.size(); ++i) {
    const size_t owner = i / per_param;
    check_shape_like(state[i], indexed("state", i), params[owner], indexed("params", owner));
    check_writable(state[i], indexed("state", i));
  }
  TORCH_CHECK(step >= 0, "step (steps already taken) must be >= 0, got ", step);
  const at::Tensor lrs_work = prepare_lrs(lrs);
  const int64_t epochs = lrs_work.numel();
  TORCH_CHECK(N > 0 || epochs == 0, "linear_fit_ needs at least one row, got X of shape ",
              X.sizes());
  at::Tensor order_work = prepare_order(order, epochs, N, X.device());
  const int64_t batch = std::max<int64_t>(1, batch_size <= 0 ? N : std::min(batch_size, N));
  LinearArgs work{X.contiguous(), y.contiguous(), {}, {}, N, K, D, static_cast<Loss>(loss),
                  reduction == kMean, delta, s, lrs_work, order_work, epochs, batch, step};
  for (const at::Tensor& p : params) work.params.push_back(p.contiguous());
  for (const at::Tensor& t : state) work.state.push_back(t.contiguous());
  return work;
}

void write_back_linear(const LinearArgs& work, at::TensorList params, at::TensorList state) {
  for (size_t i = 0; i < params.size(); ++i)
    if (!work.params[i].is_same(params[i])) params[i].copy_(work.params[i]);
  for (size_t i = 0; i < state.size(); ++i)
    if (!work.state[i].is_same(state[i])) state[i].copy_(work.state[i]);
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
  check_index_tensor(order, "order", device);
  check_shape(order, "order", {epochs, n});
  check_index_values(order, "order", n);
  return order.to(device).contiguous();
}

LinearSumsArgs prepare_linear_sums(const at::Tensor& X, const at::Tensor& y,
                                   at::TensorList params, const std::optional<at::Tensor>& rows,
                                   int64_t loss, double delta, c10::DeviceType device) {
  check_loss(loss, delta);
  const LinearModelShape shape = check_linear_model(X, y, params, device);
  at::Tensor rows_work;
  if (rows.has_value()) {
    check_index_tensor(*rows, "rows", X.device());
    TORCH_CHECK(rows->dim() == 1, "rows must be 1-D (row indices into X), got shape ",
                rows->sizes());
    check_index_values(*rows, "rows", shape.N);
    rows_work = rows->to(X.device()).contiguous();
  }
  const at::Tensor X_work = rows_in_place(X, device), y_work = rows_in_place(y, device);
  LinearSumsArgs work{X_work, y_work, {}, rows_work,
                      rows_work.defined() ? rows_work.numel() : shape.N, shape.K, shape.D,
                      row_stride(X_work), row_stride(y_work), static_cast<Loss>(loss), delta};
  for (const at::Tensor& p : params) work.params.push_back(p.contiguous());
  return work;
}

}  // namespace pyfit
