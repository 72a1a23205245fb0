// pyfit's CUDA kernels, callable without torch: plain device pointers, int64_t
// sizes and a stream. Implemented in mse.cu, sgd.cu and linear.cu; called from
// bindings.cpp. Each returns the launch's cudaError_t.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "../optimizer_settings.h"
#include "../update_rules.h"  // StepScalars

namespace pyfit {
namespace cuda {

// The ops take float32 and float64, as on the CPU.
enum class DType : int { Float32 = 0, Float64 = 1 };

// Doubles of workspace that mse_loss_fwd needs for n elements.
int64_t mse_workspace_size(int64_t n);
// loss (0-dim) and grad (n) in dtype (Float32/Float64); reduction 0 mean, 1 sum.
// Deterministic: fixed per-block partials summed in block order.
cudaError_t mse_loss_fwd(DType dtype, const void* pred, const void* target, void* grad,
                         void* loss, int64_t n, int reduction, double* workspace,
                         cudaStream_t stream);

// A run of at most kSgdChunk elements of one tensor of a fused SGD step, as
// pointers to its first element; an array of these lives in device memory and a
// block updates one chunk at a time, so no thread has to search for its tensor.
constexpr int64_t kSgdChunk = 16384;
struct SgdChunk {
  void* param;
  void* grad;
  void* buf;  // nullptr without momentum
  int64_t numel;
  int first;  // buffer holds no history yet
};
// All chunks (a device array of count) share dtype; settings from make_sgd_settings.
cudaError_t sgd_update(DType dtype, const SgdChunk* chunks, int64_t count,
                       const OptimizerSettings& settings, double lr, int zero_grads,
                       cudaStream_t stream);

// One optimizer step of a linear model on a batch (rows: device int64 indices or
// nullptr). partials: linear_partials_size(n, K, D) doubles, bounded by about 32 MB
// or two copies of the parameters, whichever is larger; scratch:
// linear_scratch_size(K, D, state_per_param) elements of dtype; fit: device
// LinearFitState, zeroed before the first step.
// K (outputs) must be at most kLinearMaxOutputs: a tile of residuals, at least one
// row of K doubles, lives in a block's 48 KiB of shared memory.
constexpr int64_t kLinearMaxOutputs = 6144;
struct LinearFitState {
  double epoch_total;  // loss of the epoch so far
  int stopped;         // a non-finite loss or update was met
  int bad;             // this step's update left a param non-finite
};
// The params (weight, then bias if count == 2) and each one's state tensors, in the
// layout of OptimizerSettings::state_per_param; all contiguous, of one dtype.
struct LinearTargets {
  void* param[2];
  void* state[2][3];
  int count;
};
int64_t linear_partials_size(int64_t n, int64_t K, int64_t D);
int64_t linear_scratch_size(int64_t K, int64_t D, int state_per_param);
// Computes the loss (kind `loss`, Huber's delta) and grads (mean: scaled by 1 / (n K)),
// then the update of every param and state element with settings and scalars; the
// update is kept only if the loss and every updated param are finite, else nothing
// changes and the fit stops. Adds the loss times share into fit->epoch_total and,
// when end_of_epoch, writes the epoch's loss to *epoch_loss (the loss, or NaN when
// only the update was not finite, on the stopping step). Does nothing once stopped.
// No kernel is launched after one whose launch failed.
cudaError_t linear_step(DType dtype, const void* X, const void* y, const int64_t* rows,
                        int64_t n, int64_t K, int64_t D, LinearTargets targets, Loss loss,
                        double delta, int mean, const OptimizerSettings& settings,
                        StepScalars scalars, double share, int end_of_epoch, double* partials,
                        void* scratch, LinearFitState* fit, void* epoch_loss,
                        cudaStream_t stream);

// linear_sums: the unscaled sums of a linear model's loss terms over n rows (rows:
// device int64 indices or nullptr; bias: nullptr for none) into total, P = 1 + K +
// K*D doubles in linear_kernel.h's layout, through linear_partials_size(n, K, D)
// doubles of partials. Deterministic; K at most kLinearMaxOutputs.
cudaError_t linear_sums(DType dtype, const void* X, const void* y, const int64_t* rows, int64_t n,
                        int64_t K, int64_t D, const void* weight, const void* bias, Loss loss,
                        double delta, double* partials, double* total, cudaStream_t stream);

}  // namespace cuda
}  // namespace pyfit
