// Fused SGD on CUDA: one launch over every tensor of one dtype, split into chunks
// of at most kSgdChunk elements; each block takes whole chunks (grid-stride), its
// threads stride through the chunk's elements.
#include "common.cuh"

namespace pyfit {
namespace cuda {
namespace {

template <typename T>
__global__ void sgd_kernel(const SgdChunk* chunks, int64_t count, SgdHyper h) {
  for (int64_t c = blockIdx.x; c < count; c += gridDim.x) {
    const SgdChunk s = chunks[c];
    T* param = static_cast<T*>(s.param);
    T* grad = static_cast<T*>(s.grad);
    T* buf = static_cast<T*>(s.buf);
    for (int64_t j = threadIdx.x; j < s.numel; j += blockDim.x) {
      // torch.optim.SGD's order of terms, so that float32 rounds as torch's does
      const T p = param[j];
      T d_p = grad[j];
      if (h.maximize) d_p = -d_p;
      if (h.weight_decay != 0) d_p = d_p + T(h.weight_decay) * p;
      if (h.momentum != 0) {
        const T b = s.first ? d_p : buf[j] * T(h.momentum) + T(1 - h.dampening) * d_p;
        buf[j] = b;
        d_p = h.nesterov ? d_p + T(h.momentum) * b : b;
      }
      param[j] = p + T(-h.lr) * d_p;
      if (h.zero_grads) grad[j] = T(0);
    }
  }
}

template <typename T>
cudaError_t launch(const SgdChunk* chunks, int64_t count, SgdHyper h, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  const int64_t blocks = count < 65535 ? count : 65535;  // grid-stride over the rest
  sgd_kernel<T><<<blocks, kThreads, 0, stream>>>(chunks, count, h);
  return cudaGetLastError();
}

}  // namespace

cudaError_t sgd_update(DType dtype, const SgdChunk* chunks, int64_t count, SgdHyper hyper,
                       cudaStream_t stream) {
  switch (dtype) {
    case DType::Float32: return launch<float>(chunks, count, hyper, stream);
    case DType::Float64: return launch<double>(chunks, count, hyper, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace pyfit
