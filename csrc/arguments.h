// What pyfit's ops take, decided in one place for the CPU kernels and the CUDA
// bindings alike (parameterised by the device type the kernel runs on): every
// argument is checked (device, dtype, shape, writable memory) before anything is
// written, and the contiguous working tensors the kernels run on are made here.
#pragma once

#include <ATen/ATen.h>

#include "optimizer_settings.h"

#include <optional>
#include <vector>

namespace pyfit {

// pred and target as contiguous tensors of one dtype, shape and device.
struct MseArgs {
  at::Tensor pred, target;
};
MseArgs prepare_mse(const at::Tensor& pred, const at::Tensor& target, int64_t reduction,
                    c10::DeviceType device);

// Contiguous working tensors of one SGD step: the caller's own tensors where they
// are contiguous, copies (written back by write_back_sgd) where not.
struct SgdArgs {
  std::vector<at::Tensor> params, grads, buffers;  // buffers empty without momentum
};
SgdArgs prepare_sgd(at::TensorList params, at::TensorList grads, at::TensorList buffers,
                    const c10::List<bool>& first_step, double momentum, bool zero_grads,
                    c10::DeviceType device);
void write_back_sgd(const SgdArgs& work, at::TensorList params, at::TensorList grads,
                    at::TensorList buffers, bool zero_grads);

// The checked hyperparameters of `optimizer` from the op's settings vector (13
// floats, layout in optimizer_settings.h); the one place they are read and checked.
OptimizerSettings make_optimizer_settings(int64_t optimizer, c10::ArrayRef<double> settings);
// The same for sgd_update_'s spelled-out hyperparameters.
OptimizerSettings make_sgd_settings(double momentum, double dampening, bool nesterov,
                                    double weight_decay, bool maximize);

// A linear model's fit: X (N, D), y (N, K), params [weight (K, D)] or [weight, bias
// (K,)], and the optimizer's state tensors, param-major (state_per_param() each).
struct LinearArgs {
  at::Tensor X, y;
  std::vector<at::Tensor> params, state;  // contiguous; copies where the caller's are not
  int64_t N, K, D;
  Loss loss;
  bool mean;  // reduction: mean (else sum)
  double delta;
  OptimizerSettings settings;
  at::Tensor lrs;    // (epochs,) float64 CPU
  at::Tensor order;  // (epochs, N) int64 on X's device, or undefined
  int64_t epochs, batch;  // batch: rows per step (N for full batch)
  int64_t step;           // steps taken before this call
};
LinearArgs prepare_linear(const at::Tensor& X, const at::Tensor& y, at::TensorList params,
                          at::TensorList state, const at::Tensor& lrs,
                          const std::optional<at::Tensor>& order, int64_t batch_size,
                          int64_t loss, int64_t reduction, double delta, int64_t optimizer,
                          c10::ArrayRef<double> settings, int64_t step, c10::DeviceType device);
void write_back_linear(const LinearArgs& work, at::TensorList params, at::TensorList state);

// The linear_fit_ op for one device, its schema written once for the CPU and CUDA:
// checks every argument, runs the fit on the working tensors (kRun returns the
// epochs' losses) and writes them back into the caller's tensors.
template <c10::DeviceType kDevice, at::Tensor (*kRun)(const LinearArgs&)>
at::Tensor linear_fit_kernel(const at::Tensor& X, const at::Tensor& y, at::TensorList params,
                             at::TensorList state, const at::Tensor& lrs,
                             const std::optional<at::Tensor>& order, int64_t batch_size,
                             int64_t loss, int64_t reduction, double delta, int64_t optimizer,
                             c10::ArrayRef<double> settings, int64_t step) {
  const LinearArgs work = prepare_linear(X, y, params, state, lrs, order, batch_size, loss,
                                         reduction, delta, optimizer, settings, step, kDevice);
  at::Tensor losses = kRun(work);
  write_back_linear(work, params, state);
  return losses;
}

// linear_sums: the rows (all of X's, or `rows` indices into X) of a linear model,
// X (N, D), y (N, K), params [weight (K, D)] or [weight, bias (K,)]; nothing is written.
// On the CPU, X and y whose rows are each contiguous but further apart (the columns
// of one wider buffer) are kept as they are, their row strides in ldx / ldy; every
// other layout, and every CUDA tensor, is a contiguous copy (ldx = D, ldy = K).
struct LinearSumsArgs {
  at::Tensor X, y;
  std::vector<at::Tensor> params;  // contiguous
  at::Tensor rows;                 // (n,) int64 contiguous on X's device, or undefined
  int64_t n, K, D;                 // n: rows summed (N without `rows`)
  int64_t ldx, ldy;                // distance between rows of X / y, in elements
  Loss loss;
  double delta;
};
LinearSumsArgs prepare_linear_sums(const at::Tensor& X, const at::Tensor& y,
                                   at::TensorList params, const std::optional<at::Tensor>& rows,
                                   int64_t loss, double delta, c10::DeviceType device);

// The linear_sums op for one device (CPU and CUDA): checks every argument, then kRun
// returns the P = 1 + K + K*D float64 sums on X's device (linear_kernel.h's layout).
template <c10::DeviceType kDevice, at::Tensor (*kRun)(const LinearSumsArgs&)>
at::Tensor linear_sums_kernel(const at::Tensor& X, const at::Tensor& y, at::TensorList params,
                              const std::optional<at::Tensor>& rows, int64_t loss,
                              double delta) {
  return kRun(prepare_linear_sums(X, y, params, rows, loss, delta, kDevice));
}

// One learning rate per epoch: a 1-D float64 CPU tensor, made contiguous.
at::Tensor prepare_lrs(const at::Tensor& lrs);
// Each epoch's row order, (epochs, n) int64 on the CPU or X's device, values in
// [0, n); returned contiguous on `device`, or undefined when there is none.
at::Tensor prepare_order(const std::optional<at::Tensor>& order, int64_t epochs, int64_t n,
                         const at::Device& device);

}  // namespace pyfit
