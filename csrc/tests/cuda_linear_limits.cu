// Host-side checks of the CUDA linear kernel's limits, runnable without a GPU: the
// per-block partial sums stay bounded whatever the batch, and a model with more
// outputs than a shared-memory tile holds is refused before anything is launched.
#include <cstdio>

#include "../cuda/kernels.h"

namespace k = pyfit::cuda;

int main() {
  int failures = 0;
  auto expect = [&](bool ok, const char* what, long long a, long long b) {
    if (!ok) {
      std::printf("FAILED: %s (%lld, %lld)\n", what, a, b);
      ++failures;
    }
  };
  const int64_t bound = int64_t(1) << 22;  // doubles: 32 MB
  const int64_t shapes[][3] = {{1 << 30, 1, 16}, {1 << 24, 1000, 1000}, {4096, 4, 300000},
                               {1 << 20, 6144, 1000}, {1, 1, 1}, {0, 1, 1}};
  for (const auto& s : shapes) {
    const int64_t n = s[0], K = s[1], D = s[2], P = 1 + K + K * D;
    const int64_t size = k::linear_partials_size(n, K, D);
    expect(size >= 2 * P, "room for one block's partials and the total", size, P);
    expect(size <= bound + P || size == 2 * P, "partials bounded by 32 MB or two parameter copies",
           size, P);
  }
  // K above the limit: refused as an invalid value, before any launch (no GPU needed)
  pyfit::OptimizerSettings sgd{};
  const k::LinearTargets targets{};
  const cudaError_t refused = k::linear_step(
      k::DType::Float32, nullptr, nullptr, nullptr, 4, k::kLinearMaxOutputs + 1, 2, targets,
      pyfit::Loss::Squared, 1.0, 1, sgd, pyfit::step_scalars(sgd, 0.1, 1), 1.0, 1, nullptr,
      nullptr, nullptr, nullptr, nullptr);
  expect(refused == cudaErrorInvalidValue, "K above kLinearMaxOutputs is refused", refused,
         cudaErrorInvalidValue);
  if (failures == 0) std::printf("ok\n");
  return failures == 0 ? 0 : 1;
}
