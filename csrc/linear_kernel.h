// The one pass over the rows of a linear model's batch: residuals, loss and the
// (unscaled) weight and bias gradients together, into double partials, for each
// loss of loss_terms.h. Used by the fit op (linear.cpp).
#pragma once

#include "loss_terms.h"
#include "pyfit.h"

#include <cmath>
#include <type_traits>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#endif

namespace pyfit {
namespace linear {

// Rows are summed in scalar_t for this many rows at a time and then flushed into
// double, which keeps float32 within a few ulps of a double-accumulated result.
constexpr int64_t kFlushRows = 128;

// Partials layout, P = 1 + K + K*D doubles: [loss, grad_bias (K), grad_weight (K, D)],
// all unscaled sums over rows (loss = sum value(r), grad_bias = sum f(r),
// grad_weight = sum f(r) x, with value and factor f of loss_terms.h).
inline int64_t partial_size(int64_t K, int64_t D) { return 1 + K + K * D; }

// An accumulator's arguments: X, y, rows, begin, end, K, D, ldx, ldy, weight, bias,
// delta, out. Row i of X starts at X + i * ldx (ldx >= D) and of y at y + i * ldy
// (ldy >= K): the rows of a wider buffer are read in place.
template <typename scalar_t>
using AccumulateFn = void (*)(const scalar_t*, const scalar_t*, const int64_t*, int64_t,
                              int64_t, int64_t, int64_t, int64_t, int64_t, const scalar_t*,
                              const scalar_t*, scalar_t, double*);

// Baseline build, plus (GCC on x86-64) a copy compiled for AVX2+FMA that is picked
// at run time when the CPU has it: the per-row dot products are compute bound
// with SSE2 only, and the extension must still load on CPUs without AVX2.
#define PYFIT_ISA base
#include "linear_rows.h"
#undef PYFIT_ISA
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PYFIT_LINEAR_AVX2 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define PYFIT_ISA avx2
#include "linear_rows.h"
namespace avx2 {
#include "linear_rows_avx2.h"
}  // namespace avx2
#undef PYFIT_ISA
#pragma GCC pop_options
#endif

// The specialised accumulator for this loss, (K, D) and this CPU, or the general one.
template <typename scalar_t, Loss L>
AccumulateFn<scalar_t> pick_accumulate(int64_t K, int64_t D) {
#ifdef PYFIT_LINEAR_AVX2
  static const bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (has_avx2) {
    if (AccumulateFn<scalar_t> special = avx2::pick_special<scalar_t, L>(K, D)) return special;
    return avx2::pick_accumulate<scalar_t, L>(K, D);
  }
#endif
  return base::pick_accumulate<scalar_t, L>(K, D);
}

template <typename scalar_t>
AccumulateFn<scalar_t> pick_accumulate(Loss loss, int64_t K, int64_t D) {
  switch (loss) {
    case Loss::Absolute: return pick_accumulate<scalar_t, Loss::Absolute>(K, D);
    case Loss::Huber: return pick_accumulate<scalar_t, Loss::Huber>(K, D);
    case Loss::Squared: break;
  }
  return pick_accumulate<scalar_t, Loss::Squared>(K, D);
}

// Rows per reduction block: fixed by (n, P) only, never by the thread count, and
// large enough that the per-block partials stay within ~32 MB. At least two
// flush stretches, so that adding a block's partials (P doubles) costs no more
// than its own flushes; few enough rows that a wide batch of a few thousand rows
// still splits across threads.
inline int64_t rows_per_block(int64_t n, int64_t P) {
  const int64_t max_blocks = std::max<int64_t>(1, std::min<int64_t>(256, (int64_t{1} << 22) / P));
  return std::max<int64_t>(2 * kFlushRows, ceil_div(n, max_blocks));
}

// Sums of the whole batch (n rows) into total (P doubles), deterministically:
// blocks of rows in parallel, each into its own partials, added in block order.
// ldx / ldy: the distance between rows of X / y (D / K when contiguous).
template <typename scalar_t>
void batch_sums(const scalar_t* X, const scalar_t* y, const int64_t* rows, int64_t n,
                int64_t K, int64_t D, int64_t ldx, int64_t ldy, const scalar_t* weight, const scalar_t* bias, Loss loss,
                scalar_t delta, std::vector<double>& partials, double* total) {
  const int64_t P = partial_size(K, D);
  const int64_t block = rows_per_block(n, P);
  const int64_t blocks = ceil_div(n, block);
  partials.assign(blocks * P, 0.0);
  const AccumulateFn<scalar_t> accumulate = pick_accumulate<scalar_t>(loss, K, D);
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      accumulate(X, y, rows, b * block, std::min(n, (b + 1) * block), K, D, ldx, ldy, weight, bias,
                 delta, partials.data() + b * P);
    }
  });
  std::fill(total, total + P, 0.0);
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t j = 0; j < P; ++j) total[j] += partials[b * P + j];
}

}  // namespace linear
}  // namespace pyfit
