// Small device helpers shared by pyfit's .cu files (no torch headers).
#pragma once

#include "kernels.h"

namespace pyfit {
namespace cuda {

constexpr int kThreads = 256;

// Sum of v over the block in a fixed tree order (deterministic); valid in thread 0.
__device__ __forceinline__ double block_sum(double v, double* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
    __syncthreads();
  }
  const double total = shared[0];
  __syncthreads();
  return total;
}

}  // namespace cuda
}  // namespace pyfit
