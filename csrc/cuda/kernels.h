// pyfit's CUDA kernels, callable without torch: plain device pointers, int64_t
// sizes and a stream. Implemented in mse.cu, sgd.cu and linear.cu; called from
// bindings.cpp. Each returns the launch's cudaError_t.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

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
struct SgdHyper {
  double lr, momentum, dampening, weight_decay;
  int nesterov, maximize, zero_grads;
};
// All chunks (a device array of count) share dtype.
cudaError_t sgd_update(DType dtype, const SgdChunk* chunks, int64_t count, SgdHyper hyper,
                       cudaStream_t stream);

// Linear least squares, one step on a batch (rows: device int64 indices or nullptr).
// partials: linear_partials_size(n, K, D) doubles, bounded by about 32 MB or two
// copies of the parameters, whichever is larger; state: device LinearFitState.
// K (outputs) must be at most kLinearMaxOutputs: a tile of residuals, at least one
// row of K doubles, lives in a block's 48 KiB of shared memory.
constexpr int64_t kLinearMaxOutputs = 6144;
struct LinearFitState {
  double epoch_total;  // loss of the epoch so far
  int stopped;         // a non-finite loss or update was met
};
int64_t linear_partials_size(int64_t n, int64_t K, int64_t D);
// Computes loss and grads, applies SGD with hyper (zero_grads ignored) unless the
// loss or an updated param is not finite (then restores them and stops), adds the
// loss times share into state->epoch_total, writes the step loss to *step_loss and,
// when end_of_epoch, the epoch loss to *epoch_loss. Does nothing once state->stopped.
// scratch: 2 * (K*D + K) elements of dtype for the saved params and buffers.
// The update is not launched when the launch of the partial sums failed.
cudaError_t linear_step(DType dtype, const void* X, const void* y, const int64_t* rows,
                        int64_t n, int64_t K, int64_t D, void* weight, void* bias,
                        void* weight_buf, void* bias_buf, SgdHyper hyper, int first,
                        int reduction, double share, int end_of_epoch, double* partials,
                        void* scratch, LinearFitState* state, void* step_loss, void* epoch_loss,
                        cudaStream_t stream);

}  // namespace cuda
}  // namespace pyfit
