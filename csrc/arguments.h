// What pyfit's ops take, decided in one place for the CPU kernels and the CUDA
// bindings alike (parameterised by the device type the kernel runs on): every
// argument is checked (device, dtype, shape, writable memory) before anything is
// written, and the contiguous working tensors the kernels run on are made here.
#pragma once

#include <ATen/ATen.h>

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

// The same for a linear model's step or fit: X (N, D), y (N, K), weight (K, D),
// bias (K) and the momentum buffers; undefined where absent.
struct LinearArgs {
  at::Tensor X, y, weight, bias, weight_buf, bias_buf;
  int64_t N, K, D;
};
LinearArgs prepare_linear(const at::Tensor& X, const at::Tensor& y, const at::Tensor& weight,
                          const std::optional<at::Tensor>& bias,
                          const std::optional<at::Tensor>& weight_buf,
                          const std::optional<at::Tensor>& bias_buf, double momentum,
                          int64_t reduction, c10::DeviceType device);
void write_back_linear(const LinearArgs& work, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias,
                       const std::optional<at::Tensor>& weight_buf,
                       const std::optional<at::Tensor>& bias_buf);

// One learning rate per epoch: a 1-D float64 CPU tensor, made contiguous.
at::Tensor prepare_lrs(const at::Tensor& lrs);
// Each epoch's row order, (epochs, n) int64 on the CPU or X's device, values in
// [0, n); returned contiguous on `device`, or undefined when there is none.
at::Tensor prepare_order(const std::optional<at::Tensor>& order, int64_t epochs, int64_t n,
                         const at::Device& device);

}  // namespace pyfit
