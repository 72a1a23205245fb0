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
  // A linear model's fit, y ≈ X @ weight.T + bias, params [weight] or [weight, bias]:
  // one lr per epoch, an optional (epochs, N) row order, batch_size <= 0 full batch;
  // loss 0 squared, 1 absolute, 2 huber (delta); optimizer 0 sgd, 1 adam, 2 rmsprop,
  // 3 adagrad, settings its 13 hyperparameters (csrc/optimizer_settings.h) and state
  // its tensors, param-major; step: steps already taken. Returns each epoch's loss.
  m.def(
      "linear_fit_(Tensor X, Tensor y, Tensor(a!)[] params, Tensor(b!)[] state, Tensor lrs, "
      "Tensor? order, int batch_size, int loss, int reduction, float delta, int optimizer, "
      "float[] settings, int step) -> Tensor");
  // The same model's row pass alone, over all rows of X or those rows indexes: the
  // unscaled float64 sums [loss value, d/d bias (K), d/d weight (K, D)] (without the
  // loss's constant factor), P = 1 + K + K*D, to add over chunks before an update.
  m.def("linear_sums(Tensor X, Tensor y, Tensor[] params, Tensor? rows, int loss, float delta) -> Tensor");
}
