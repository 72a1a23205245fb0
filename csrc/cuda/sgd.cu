// Fused SGD on CUDA: one launch over the concatenated elements of every tensor;
// each thread finds its tensor by binary search over the segment offsets.
#include "common.cuh"

namespace pyfit {
namespace cuda {
namespace {

template <typename T>
__global__ void sgd_kernel(const SgdSegment* segments, int64_t count, int64_t total,
                           SgdHyper h) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    int64_t lo = 0, hi = count - 1;  // last segment with offset <= i
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) / 2;
      if (segments[mid].offset <= i) lo = mid; else hi = mid - 1;
    }
    const SgdSegment& s = segments[lo];
    const int64_t j = i - s.offset;
    T* param = static_cast<T*>(s.param);
    T* grad = static_cast<T*>(s.grad);
    T* buf = static_cast<T*>(s.buf);
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

template <typename T>
cudaError_t launch(const SgdSegment* segments, int64_t count, int64_t total, SgdHyper h,
                   cudaStream_t stream) {
  if (total == 0) return cudaSuccess;
  int64_t blocks = (total + kThreads - 1) / kThreads;
  if (blocks > 65535) blocks = 65535;  // grid-stride loop covers the rest
  sgd_kernel<T><<<blocks, kThreads, 0, stream>>>(segments, count, total, h);
  return cudaGetLastError();
}

}  // namespace

cudaError_t sgd_update(DType dtype, const SgdSegment* segments, int64_t count, int64_t total,
                       SgdHyper hyper, cudaStream_t stream) {
  switch (dtype) {
    case DType::Float32: return launch<float>(segments, count, total, hyper, stream);
    case DType::Float64: return launch<double>(segments, count, total, hyper, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace pyfit
