// One optimizer step of a linear model on CUDA, deterministic and without host
// synchronisation (the fit's state lives on the device); linear_sums runs stages
// 1 and 2 alone:
//   1. partials: a fixed grid of blocks each sums its rows' loss and unscaled
//      gradient terms (loss_terms.h) into its own partials (residuals of a tile of
//      rows in shared memory, then one thread per output);
//   2. total: the partials added in block order, one thread per output;
//   3. update: each param element's new value and state (update_rules.h) into
//      scratch, flagging a non-finite param;
//   4. commit: the new values copied over the params and state unless the loss or
//      an updated param was not finite; the epoch's loss kept by one thread.
#include "../loss_terms.h"
#include "common.cuh"

namespace pyfit {
namespace cuda {
namespace {

constexpr int64_t kMaxBlocks = 256;
constexpr int64_t kSharedDoubles = kLinearMaxOutputs;  // 48 KiB of residuals per tile
// Per-block partials together stay under this many doubles (32 MB) unless one
// block's partials (one parameter set) alone is larger.
constexpr int64_t kMaxPartialDoubles = int64_t(1) << 22;
constexpr int64_t kMaxElementwiseBlocks = 1024;

// Blocks for n rows and P = 1 + K + K*D partial sums: about one per 1024 rows, at
// most kMaxBlocks, and few enough that their partials stay bounded.
int64_t blocks_for(int64_t n, int64_t P) {
  int64_t b = (n + 1023) / 1024;
  if (b > kMaxBlocks) b = kMaxBlocks;
  if (b > kMaxPartialDoubles / P) b = kMaxPartialDoubles / P;
  return b < 1 ? 1 : b;
}

// Blocks of kThreads for an elementwise kernel over m elements (grid-stride beyond).
int64_t elementwise_blocks(int64_t m) {
  const int64_t b = (m + kThreads - 1) / kThreads;
  return b < 1 ? 1 : (b > kMaxElementwiseBlocks ? kMaxElementwiseBlocks : b);
}

__device__ __forceinline__ int64_t global_thread() {
  return int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t global_stride() { return int64_t(gridDim.x) * blockDim.x; }

template <typename T, Loss L>
__global__ void linear_partials(const T* X, const T* y, const int64_t* rows, int64_t n,
                                int64_t K, int64_t D, const T* weight, const T* bias, T delta,
                                int64_t tile, const LinearFitState* fit, double* partials) {
  if (fit && fit->stopped) return;
  extern __shared__ double residual[];  // (tile, K): pred - target
  const int64_t P = 1 + K + K * D;
  const int64_t per_block = (n + gridDim.x - 1) / gridDim.x;
  const int64_t begin = int64_t(blockIdx.x) * per_block;
  const int64_t end = begin + per_block < n ? begin + per_block : n;
  // each thread owns outputs j = threadIdx.x + m * blockDim.x; accumulate in a
  // strided loop over them per tile (outputs beyond the block size loop).
  double* out = partials + int64_t(blockIdx.x) * P;
  for (int64_t j = threadIdx.x; j < P; j += blockDim.x) out[j] = 0;
  for (int64_t t0 = begin; t0 < end; t0 += tile) {
    const int64_t rows_here = (end - t0) < tile ? (end - t0) : tile;
    __syncthreads();
    for (int64_t q = threadIdx.x; q < rows_here * K; q += blockDim.x) {
      const int64_t i = q / K, k = q % K;
      const int64_t row = rows ? rows[t0 + i] : t0 + i;
      T dot = 0;
      for (int64_t d = 0; d < D; ++d) dot += X[row * D + d] * weight[k * D + d];
      residual[q] = double((dot - y[row * K + k]) + (bias ? bias[k] : T(0)));
    }
    __syncthreads();
    for (int64_t j = threadIdx.x; j < P; j += blockDim.x) {
      double acc = 0;
      for (int64_t i = 0; i < rows_here; ++i) {
        if (j == 0) {
          for (int64_t k = 0; k < K; ++k) acc += double(loss_value<L>(T(residual[i * K + k]), delta));
        } else if (j <= K) {
          acc += double(loss_factor<L>(T(residual[i * K + (j - 1)]), delta));
        } else {
          const int64_t k = (j - 1 - K) / D, d = (j - 1 - K) % D;
          const int64_t row = rows ? rows[t0 + i] : t0 + i;
          acc += double(loss_factor<L>(T(residual[i * K + k]), delta)) * double(X[row * D + d]);
        }
      }
      out[j] += acc;
    }
  }
}

// (fit: null outside a fit, as in linear_sums.)
// total[j] = the blocks' partials of output j added in block order.
__global__ void linear_total(int64_t blocks, int64_t P, const double* partials, double* total,
                             const LinearFitState* fit) {
  if (fit && fit->stopped) return;
  for (int64_t j = global_thread(); j < P; j += global_stride()) {
    double acc = 0;
    for (int64_t b = 0; b < blocks; ++b) acc += partials[b * P + j];
    total[j] = acc;
  }
}

// Element j of the params, weight (K*D) then bias (K): its param and offset.
struct Element {
  int target;
  int64_t index, grad;  // index in its param; its grad's position in the partials
};
__device__ __forceinline__ Element element_at(int64_t j, int64_t K, int64_t KD) {
  return j < KD ? Element{0, j, 1 + K + j} : Element{1, j - KD, 1 + (j - KD)};
}

// next: (1 + per_param, m) new values, the params' then each state slot's.
template <typename T>
__global__ void linear_update(int64_t m, int64_t K, int64_t KD, LinearTargets targets,
                              int per_param, OptimizerSettings settings, StepScalars scalars,
                              double scale, double divisor, const double* total, T* next,
                              LinearFitState* fit) {
  if (fit->stopped || !isfinite(double(T(total[0] / divisor)))) return;
  for (int64_t j = global_thread(); j < m; j += global_stride()) {
    const Element e = element_at(j, K, KD);
    T state[3] = {T(0), T(0), T(0)};
    for (int s = 0; s < per_param; ++s)
      state[s] = static_cast<const T*>(targets.state[e.target][s])[e.index];
    const T param = static_cast<const T*>(targets.param[e.target])[e.index];
    const T grad = T(total[e.grad] * scale);
    const T updated =
        update_element<T>(settings, scalars, param, grad, &state[0], &state[1], &state[2]);
    next[j] = updated;
    for (int s = 0; s < per_param; ++s) next[(1 + s) * m + j] = state[s];
    if (!isfinite(double(updated))) fit->bad = 1;
  }
}

// Keeps the update unless the loss or a param is not finite. Thread 0 of block 0
// alone writes fit->stopped, only when no thread is to keep anything, so the other
// threads' reads of it cannot disagree with their own decision.
template <typename T>
__global__ void linear_commit(int64_t m, int64_t K, int64_t KD, LinearTargets targets,
                              int per_param, double divisor, const double* total, const T* next,
                              LinearFitState* fit, double share, int end_of_epoch,
                              T* epoch_loss) {
  if (fit->stopped) return;
  const T loss = T(total[0] / divisor);
  const bool loss_finite = isfinite(double(loss));
  const bool keep = loss_finite && !fit->bad;
  if (keep) {
    for (int64_t j = global_thread(); j < m; j += global_stride()) {
      const Element e = element_at(j, K, KD);
      static_cast<T*>(targets.param[e.target])[e.index] = next[j];
      for (int s = 0; s < per_param; ++s)
        static_cast<T*>(targets.state[e.target][s])[e.index] = next[(1 + s) * m + j];
    }
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    if (!keep) {
      *epoch_loss = loss_finite ? T(NAN) : loss;
      fit->stopped = 1;
    } else {
      fit->epoch_total += double(loss) * share;
      if (end_of_epoch) {
        *epoch_loss = T(fit->epoch_total);
        fit->epoch_total = 0;
      }
    }
  }
}

// Stages 1 and 2: the sums of n rows into total (P doubles) through per-block
// partials (linear_partials_size(n, K, D) doubles, total may be their last P).
template <typename T, Loss L>
cudaError_t launch_sums(const T* X, const T* y, const int64_t* rows, int64_t n, int64_t K,
                        int64_t D, const T* weight, const T* bias, T delta,
                        const LinearFitState* fit, double* partials, double* total,
                        cudaStream_t stream) {
  if (K > kLinearMaxOutputs) return cudaErrorInvalidValue;  // the bindings refuse it first
  const int64_t P = 1 + K + K * D;
  const int64_t blocks = blocks_for(n, P);
  int64_t tile = K > 0 ? kSharedDoubles / K : 64;
  tile = tile > 64 ? 64 : (tile < 1 ? 1 : tile);
  linear_partials<T, L><<<blocks, kThreads, tile * (K > 0 ? K : 1) * sizeof(double), stream>>>(
      X, y, rows, n, K, D, weight, bias, delta, tile, fit, partials);
  // sums of partials that were never written would be garbage
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) return status;
  linear_total<<<elementwise_blocks(P), kThreads, 0, stream>>>(blocks, P, partials, total, fit);
  return cudaGetLastError();
}

template <typename T, Loss L>
cudaError_t launch(const T* X, const T* y, const int64_t* rows, int64_t n, int64_t K,
                   int64_t D, LinearTargets targets, T delta, int mean,
                   const OptimizerSettings& settings, StepScalars scalars, double share,
                   int end_of_epoch, double* partials, T* next, LinearFitState* fit,
                   T* epoch_loss, cudaStream_t stream) {
  const int64_t KD = K * D;
  const T* weight = static_cast<const T*>(targets.param[0]);
  const T* bias = targets.count > 1 ? static_cast<const T*>(targets.param[1]) : nullptr;
  double* total = partials + blocks_for(n, 1 + K + KD) * (1 + K + KD);
  // a step from partials that were never summed would corrupt the params
  cudaError_t status =
      launch_sums<T, L>(X, y, rows, n, K, D, weight, bias, delta, fit, partials, total, stream);
  if (status != cudaSuccess) return status;
  const int64_t m = KD + (bias ? K : 0);
  const int per_param = settings.state_per_param();
  const double divisor = mean ? double(n) * double(K) : 1.0;
  const double scale = loss_scale(L, mean != 0, n, K);
  linear_update<T><<<elementwise_blocks(m), kThreads, 0, stream>>>(
      m, K, KD, targets, per_param, settings, scalars, scale, divisor, total, next, fit);
  if ((status = cudaGetLastError()) != cudaSuccess) return status;
  linear_commit<T><<<elementwise_blocks(m), kThreads, 0, stream>>>(
      m, K, KD, targets, per_param, divisor, total, next, fit, share, end_of_epoch, epoch_loss);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_for_loss(Loss loss, const T* X, const T* y, const int64_t* rows, int64_t n,
                            int64_t K, int64_t D, LinearTargets targets, T delta, int mean,
                            const OptimizerSettings& settings, StepScalars scalars,
                            double share, int end_of_epoch, double* partials, T* next,
                            LinearFitState* fit, T* epoch_loss, cudaStream_t stream) {
#define PYFIT_LINEAR_LAUNCH(L)                                                               \
  launch<T, L>(X, y, rows, n, K, D, targets, delta, mean, settings, scalars, share,          \
               end_of_epoch, partials, next, fit, epoch_loss, stream)
  switch (loss) {
    case Loss::Squared: return PYFIT_LINEAR_LAUNCH(Loss::Squared);
    case Loss::Absolute: return PYFIT_LINEAR_LAUNCH(Loss::Absolute);
    case Loss::Huber: return PYFIT_LINEAR_LAUNCH(Loss::Huber);
  }
#undef PYFIT_LINEAR_LAUNCH
  return cudaErrorInvalidValue;
}

template <typename T>
cudaError_t launch_sums_for_loss(Loss loss, const T* X, const T* y, const int64_t* rows,
                                 int64_t n, int64_t K, int64_t D, const T* weight,
                                 const T* bias, T delta, double* partials, double* total,
                                 cudaStream_t stream) {
#define PYFIT_LINEAR_SUMS_LAUNCH(L) \
  launch_sums<T, L>(X, y, rows, n, K, D, weight, bias, delta, nullptr, partials, total, stream)
  switch (loss) {
    case Loss::Squared: return PYFIT_LINEAR_SUMS_LAUNCH(Loss::Squared);
    case Loss::Absolute: return PYFIT_LINEAR_SUMS_LAUNCH(Loss::Absolute);
    case Loss::Huber: return PYFIT_LINEAR_SUMS_LAUNCH(Loss::Huber);
  }
#undef PYFIT_LINEAR_SUMS_LAUNCH
  return cudaErrorInvalidValue;
}

}  // namespace

int64_t linear_partials_size(int64_t n, int64_t K, int64_t D) {
  const int64_t P = 1 + K + K * D;
  return (blocks_for(n, P) + 1) * P;
}

int64_t linear_scratch_size(int64_t K, int64_t D, int state_per_param) {
  return (1 + state_per_param) * (K * D + K);
}

cudaError_t linear_step(DType dtype, const void* X, const void* y, const int64_t* rows,
                        int64_t n, int64_t K, int64_t D, LinearTargets targets, Loss loss,
                        double delta, int mean, const OptimizerSettings& settings,
                        StepScalars scalars, double share, int end_of_epoch, double* partials,
                        void* scratch, LinearFitState* fit, void* epoch_loss,
                        cudaStream_t stream) {
#define PYFIT_LINEAR_DTYPE(T)                                                                 \
  launch_for_loss<T>(loss, static_cast<const T*>(X), static_cast<const T*>(y), rows, n, K, D, \
                     targets, T(delta), mean, settings, scalars, share, end_of_epoch,        \
                     partials, static_cast<T*>(scratch), fit, static_cast<T*>(epoch_loss),   \
                     stream)
  if (dtype == DType::Float32) return PYFIT_LINEAR_DTYPE(float);
  if (dtype == DType::Float64) return PYFIT_LINEAR_DTYPE(double);
#undef PYFIT_LINEAR_DTYPE
  return cudaErrorInvalidValue;
}

cudaError_t linear_sums(DType dtype, const void* X, const void* y, const int64_t* rows, int64_t n,
                        int64_t K, int64_t D, const void* weight, const void* bias, Loss loss,
                        double delta, double* partials, double* total, cudaStream_t stream) {
#define PYFIT_LINEAR_SUMS_DTYPE(T)                                                           \
  launch_sums_for_loss<T>(loss, static_cast<const T*>(X), static_cast<const T*>(y), rows, n, \
                          K, D, static_cast<const T*>(weight), static_cast<const T*>(bias), \
                          T(delta), partials, total, stream)
  if (dtype == DType::Float32) return PYFIT_LINEAR_SUMS_DTYPE(float);
  if (dtype == DType::Float64) return PYFIT_LINEAR_SUMS_DTYPE(double);
#undef PYFIT_LINEAR_SUMS_DTYPE
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace pyfit
