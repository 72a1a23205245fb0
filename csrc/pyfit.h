// Shared pieces of pyfit's CPU kernels: input checks that name what was expected
// and what came, and the fixed blocking that makes reductions deterministic.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <cstdint>
#include <vector>

namespace pyfit {

constexpr int64_t kMean = 0;
constexpr int64_t kSum = 1;

// Reductions sum fixed-size blocks, each into its own double partial, and then add
// the partials in block order. Block boundaries do not depend on the thread count,
// so a result is bit-identical run to run (and across thread counts).
constexpr int64_t kReduceBlock = 32768;
// Elementwise kernels hand each thread at least this many elements.
constexpr int64_t kElementwiseGrain = 32768;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline void check_reduction(int64_t reduction) {
  TORCH_CHECK(reduction == kMean || reduction == kSum,
              "reduction must be 0 (mean) or 1 (sum), got ", reduction);
}

// The ops compute in float32 and float64 only, on the CPU and on CUDA alike.
inline void check_floating(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble,
              name, " must be float32 or float64, got ", t.scalar_type());
}

inline void check_shape(const at::Tensor& t, const char* name, at::IntArrayRef expected) {
  TORCH_CHECK(t.sizes() == expected, name, " must have shape ", expected, ", got ",
              t.sizes());
}

}  // namespace pyfit
