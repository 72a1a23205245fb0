// Squared error on CUDA: grad = scale * diff in one pass, loss from per-block
// partials (fixed grid, fixed tree order) summed by one block: deterministic.
#include "common.cuh"

namespace pyfit {
namespace cuda {
namespace {

constexpr int64_t kMaxBlocks = 1024;

int64_t grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return blocks < 1 ? 1 : (blocks > kMaxBlocks ? kMaxBlocks : blocks);
}

template <typename T>
__global__ void mse_partials(const T* pred, const T* target, T* grad, int64_t n, T scale,
                             double* partials) {
  __shared__ double shared[kThreads];
  double acc = 0;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const T diff = pred[i] - target[i];
    acc += double(diff) * double(diff);
    grad[i] = diff * scale;
  }
  const double total = block_sum(acc, shared);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

template <typename T>
__global__ void mse_finish(const double* partials, int64_t blocks, int64_t n, int reduction,
                           T* loss) {
  __shared__ double shared[kThreads];
  double acc = 0;
  for (int64_t b = threadIdx.x; b < blocks; b += blockDim.x) acc += partials[b];
  const double total = block_sum(acc, shared);
  // an empty mean is 0/0 = NaN, as in F.mse_loss
  if (threadIdx.x == 0) *loss = T(reduction == 0 ? total / double(n) : total);
}

template <typename T>
cudaError_t launch(const T* pred, const T* target, T* grad, T* loss, int64_t n, int reduction,
                   double* workspace, cudaStream_t stream) {
  const int64_t blocks = grid_for(n);
  const T scale = T(reduction == 0 ? 2.0 / double(n > 0 ? n : 1) : 2.0);
  mse_partials<T><<<blocks, kThreads, 0, stream>>>(pred, target, grad, n, scale, workspace);
  mse_finish<T><<<1, kThreads, 0, stream>>>(workspace, blocks, n, reduction, loss);
  return cudaGetLastError();
}

}  // namespace

int64_t mse_workspace_size(int64_t n) { return grid_for(n); }

cudaError_t mse_loss_fwd(DType dtype, const void* pred, const void* target, void* grad,
                         void* loss, int64_t n, int reduction, double* workspace,
                         cudaStream_t stream) {
  if (dtype == DType::Float32)
    return launch(static_cast<const float*>(pred), static_cast<const float*>(target),
                  static_cast<float*>(grad), static_cast<float*>(loss), n, reduction, workspace,
                  stream);
  if (dtype == DType::Float64)
    return launch(static_cast<const double*>(pred), static_cast<const double*>(target),
                  static_cast<double*>(grad), static_cast<double*>(loss), n, reduction,
                  workspace, stream);
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace pyfit
