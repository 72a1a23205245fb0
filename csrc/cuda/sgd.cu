// Fused SGD on CUDA: one launch over every tensor of one dtype, split into chunks
// of at most kSgdChunk elements; each block takes whole chunks (grid-stride), its
// threads stride through the chunk's elements with the shared SGD rule.
#include "common.cuh"

namespace pyfit {
namespace cuda {
namespace {

template <typename T>
__global__ void sgd_kernel(const SgdChunk* chunks, int64_t count, OptimizerSettings settings,
                           double lr, int zero_grads) {
  for (int64_t c = blockIdx.x; c < count; c += gridDim.x) {
    const SgdChunk s = chunks[c];
    T* param = static_cast<T*>(s.param);
    T* grad = static_cast<T*>(s.grad);
    T* buf = static_cast<T*>(s.buf);
    const StepScalars scalars{lr, 0.0, 1.0, s.first != 0};
    for (int64_t j = threadIdx.x; j < s.numel; j += blockDim.x) {
      param[j] = rules::sgd(settings, scalars, param[j], grad[j], buf ? buf + j : nullptr);
      if (zero_grads) grad[j] = T(0);
    }
  }
}

template <typename T>
cudaError_t launch(const SgdChunk* chunks, int64_t count, const OptimizerSettings& settings,
                   double lr, int zero_grads, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  const int64_t blocks = count < 65535 ? count : 65535;  // grid-stride over the rest
  sgd_kernel<T><<<blocks, kThreads, 0, stream>>>(chunks, count, settings, lr, zero_grads);
  return cudaGetLastError();
}

}  // namespace

cudaError_t sgd_update(DType dtype, const SgdChunk* chunks, int64_t count,
                       const OptimizerSettings& settings, double lr, int zero_grads,
                       cudaStream_t stream) {
  switch (dtype) {
    case DType::Float32: return launch<float>(chunks, count, settings, lr, zero_grads, stream);
    case DType::Float64: return launch<double>(chunks, count, settings, lr, zero_grads, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace pyfit
