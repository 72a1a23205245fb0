// One SGD step of a linear least-squares model on CUDA, deterministic: a fixed grid
// of blocks each sums its rows' loss and gradients into its own partials (residuals
// of a tile of rows in shared memory, then one thread per output), and a single
// block adds the partials in block order and applies the guarded update. The fit
// state lives on the device, so an epoch loop needs no host synchronisation.
#include "common.cuh"

namespace pyfit {
namespace cuda {
namespace {

constexpr int64_t kMaxBlocks = 256;
constexpr int64_t kSharedDoubles = kLinearMaxOutputs;  // 48 KiB of residuals per tile
// Per-block partials together stay under this many doubles (32 MB) unless one
// block's partials (one parameter set) alone is larger.
constexpr int64_t kMaxPartialDoubles = int64_t(1) << 22;

// Blocks for n rows and P = 1 + K + K*D partial sums: about one per 1024 rows, at
// most kMaxBlocks, and few enough that their partials stay bounded.
int64_t blocks_for(int64_t n, int64_t P) {
  int64_t b = (n + 1023) / 1024;
  if (b > kMaxBlocks) b = kMaxBlocks;
  if (b > kMaxPartialDoubles / P) b = kMaxPartialDoubles / P;
  return b < 1 ? 1 : b;
}

template <typename T>
__global__ void linear_partials(const T* X, const T* y, const int64_t* rows, int64_t n,
                                int64_t K, int64_t D, const T* weight, const T* bias,
                                int64_t tile, const LinearFitState* state, double* partials) {
  if (state->stopped) return;
  extern __shared__ double residual[];  // (tile, K)
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
          for (int64_t k = 0; k < K; ++k) acc += residual[i * K + k] * residual[i * K + k];
        } else if (j <= K) {
          acc += residual[i * K + (j - 1)];
        } else {
          const int64_t k = (j - 1 - K) / D, d = (j - 1 - K) % D;
          const int64_t row = rows ? rows[t0 + i] : t0 + i;
          acc += residual[i * K + k] * double(X[row * D + d]);
        }
      }
      out[j] += acc;
    }
  }
}

template <typename T>
__device__ void sgd_element(T* p, T* buf, T g, int first, const SgdHyper& h) {
  T d_p = h.maximize ? -g : g;
  if (h.weight_decay != 0) d_p = d_p + T(h.weight_decay) * *p;
  if (h.momentum != 0) {
    *buf = first ? d_p : *buf * T(h.momentum) + T(1 - h.dampening) * d_p;
    d_p = h.nesterov ? d_p + T(h.momentum) * *buf : *buf;
  }
  *p = *p + T(-h.lr) * d_p;
}

template <typename T>
__global__ void linear_update(int64_t blocks, int64_t n, int64_t K, int64_t D, T* weight,
                              T* bias, T* weight_buf, T* bias_buf, SgdHyper h, int first,
                              int reduction, double share, int end_of_epoch, double* partials,
                              T* saved, LinearFitState* state, T* step_loss, T* epoch_loss) {
  if (state->stopped) return;
  const int64_t P = 1 + K + K * D, KD = K * D;
  double* total = partials + blocks * P;
  for (int64_t j = threadIdx.x; j < P; j += blockDim.x) {
    double acc = 0;
    for (int64_t b = 0; b < blocks; ++b) acc += partials[b * P + j];  // block order
    total[j] = acc;
  }
  __syncthreads();
  const double count = double(n) * double(K);
  const double scale = reduction == 0 ? 2.0 / count : 2.0;
  const T loss = T(reduction == 0 ? total[0] / count : total[0]);
  if (!isfinite(double(loss))) {
    if (threadIdx.x == 0) {
      *step_loss = loss;
      *epoch_loss = loss;
      state->stopped = 1;
    }
    return;
  }
  int bad = 0;
  for (int64_t j = threadIdx.x; j < KD + K; j += blockDim.x) {
    const bool is_w = j < KD;
    T* p = is_w ? weight + j : bias + (j - KD);
    if (!is_w && bias == nullptr) continue;
    T* buf = weight_buf ? (is_w ? weight_buf + j : bias_buf + (j - KD)) : nullptr;
    saved[j] = *p;
    if (buf) saved[KD + K + j] = *buf;
    const T g = T(total[is_w ? 1 + K + j : 1 + (j - KD)] * scale);
    T unused = 0;
    sgd_element(p, buf ? buf : &unused, g, first, h);
    bad |= !isfinite(double(*p));
  }
  bad = __syncthreads_or(bad);
  if (bad) {
    for (int64_t j = threadIdx.x; j < KD + K; j += blockDim.x) {
      const bool is_w = j < KD;
      if (!is_w && bias == nullptr) continue;
      (is_w ? weight[j] : bias[j - KD]) = saved[j];
      if (weight_buf) (is_w ? weight_buf[j] : bias_buf[j - KD]) = saved[KD + K + j];
    }
  }
  if (threadIdx.x == 0) {
    if (bad) {
      *step_loss = T(NAN);
      *epoch_loss = T(NAN);
      state->stopped = 1;
      return;
    }
    *step_loss = loss;
    state->epoch_total += double(loss) * share;
    if (end_of_epoch) {
      *epoch_loss = T(state->epoch_total);
      state->epoch_total = 0;
    }
  }
}

template <typename T>
cudaError_t launch(const T* X, const T* y, const int64_t* rows, int64_t n, int64_t K,
                   int64_t D, T* weight, T* bias, T* weight_buf, T* bias_buf, SgdHyper h,
                   int first, int reduction, double share, int end_of_epoch, double* partials,
                   T* saved, LinearFitState* state, T* step_loss, T* epoch_loss,
                   cudaStream_t stream) {
  if (K > kLinearMaxOutputs) return cudaErrorInvalidValue;  // the bindings refuse it first
  const int64_t blocks = blocks_for(n, 1 + K + K * D);
  int64_t tile = K > 0 ? kSharedDoubles / K : 64;
  tile = tile > 64 ? 64 : (tile < 1 ? 1 : tile);
  linear_partials<T><<<blocks, kThreads, tile * (K > 0 ? K : 1) * sizeof(double), stream>>>(
      X, y, rows, n, K, D, weight, bias, tile, state, partials);
  // an update from partials that were never summed would corrupt the params
  const cudaError_t partials_launch = cudaGetLastError();
  if (partials_launch != cudaSuccess) return partials_launch;
  linear_update<T><<<1, kThreads, 0, stream>>>(blocks, n, K, D, weight, bias, weight_buf,
                                               bias_buf, h, first, reduction, share,
                                               end_of_epoch, partials, saved, state, step_loss,
                                               epoch_loss);
  return cudaGetLastError();
}

}  // namespace

int64_t linear_partials_size(int64_t n, int64_t K, int64_t D) {
  const int64_t P = 1 + K + K * D;
  return (blocks_for(n, P) + 1) * P;
}

cudaError_t linear_step(DType dtype, const void* X, const void* y, const int64_t* rows,
                        int64_t n, int64_t K, int64_t D, void* weight, void* bias,
                        void* weight_buf, void* bias_buf, SgdHyper hyper, int first,
                        int reduction, double share, int end_of_epoch, double* partials,
                        void* scratch, LinearFitState* state, void* step_loss, void* epoch_loss,
                        cudaStream_t stream) {
#define PYFIT_LINEAR_LAUNCH(T)                                                                \
  launch<T>(static_cast<const T*>(X), static_cast<const T*>(y), rows, n, K, D,               \
            static_cast<T*>(weight), static_cast<T*>(bias), static_cast<T*>(weight_buf),      \
            static_cast<T*>(bias_buf), hyper, first, reduction, share, end_of_epoch, partials, \
            static_cast<T*>(scratch), state, static_cast<T*>(step_loss),                     \
            static_cast<T*>(epoch_loss), stream)
  if (dtype == DType::Float32) return PYFIT_LINEAR_LAUNCH(float);
  if (dtype == DType::Float64) return PYFIT_LINEAR_LAUNCH(double);
#undef PYFIT_LINEAR_LAUNCH
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace pyfit
