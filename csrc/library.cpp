// The schemas of pyfit's ops. Kernels register per device in mse.cpp, sgd.cpp,
// linear.cpp (CPU) and cuda/bindings.cpp (CUDA); fake kernels and autograd are
// registered from Python (pyfit/ops/_extension.py).
#include <torch/library.h>

TORCH_LIBRARY(pyfit, m) {
  // reduction: 0 mean, 1 sum. Returns (loss, d loss / d pred).
  m.def("mse_loss_fwd(Tensor pred, Tensor target, int reduction) -> (Tensor, Tensor)");
  // grads are written (zeroed) when zero_grads; buffers when momentum != 0.
  m.def(
      "sgd_update_(Tensor(a!)[] params, Tensor(b!)[] grads, Tensor(c!)[] momentum_buffers, "
      "bool[] first_step, float lr, float momentum, float dampening, bool nesterov, "
      "float weight_decay, bool maximize, bool zero_grads) -> ()");
  m.def(
      "linear_step_(Tensor X, Tensor y, Tensor(a!) weight, Tensor(b!)? bias, "
      "Tensor(c!)? weight_buf, Tensor(d!)? bias_buf, float lr, float momentum, "
      "float dampening, bool nesterov, float weight_decay, bool maximize, bool first_step, "
      "int reduction) -> Tensor");
  m.def(
      "linear_fit_(Tensor X, Tensor y, Tensor(a!) weight, Tensor(b!)? bias, "
      "Tensor(c!)? weight_buf, Tensor(d!)? bias_buf, Tensor lrs, Tensor? order, "
      "int batch_size, float momentum, float dampening, bool nesterov, float weight_decay, "
      "bool maximize, bool first_step, int reduction) -> Tensor");
}
