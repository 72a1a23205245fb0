// The per-row kernels of linear_kernel.h, included there once per instruction set
// (inside namespace pyfit::linear::PYFIT_ISA), so this file includes nothing itself
// and has no include guard.

namespace PYFIT_ISA {

// Dot of one row with one weight row. With a compile-time power-of-two D the
// products are summed as a tree, which the compiler turns into a few vector ops.
template <typename scalar_t, int kD>
inline scalar_t dot(const scalar_t* x, const scalar_t* w, int64_t D) {
  if constexpr (kD > 0) {
    scalar_t prod[kD];
    for (int d = 0; d < kD; ++d) prod[d] = x[d] * w[d];
    if constexpr ((kD & (kD - 1)) == 0) {
      for (int h = kD / 2; h >= 1; h /= 2)
        for (int d = 0; d < h; ++d) prod[d] += prod[d + h];
      return prod[0];
    } else {
      scalar_t s = 0;
      for (int d = 0; d < kD; ++d) s += prod[d];
      return s;
    }
  } else {
    using Vec = at::vec::Vectorized<scalar_t>;
    constexpr int64_t W = Vec::size();
    // four independent sums: one would wait on the previous add every vector
    Vec acc(scalar_t(0)), acc1(scalar_t(0)), acc2(scalar_t(0)), acc3(scalar_t(0));
    int64_t d = 0;
    for (; d + 4 * W <= D; d += 4 * W) {
      acc = acc + Vec::loadu(x + d) * Vec::loadu(w + d);
      acc1 = acc1 + Vec::loadu(x + d + W) * Vec::loadu(w + d + W);
      acc2 = acc2 + Vec::loadu(x + d + 2 * W) * Vec::loadu(w + d + 2 * W);
      acc3 = acc3 + Vec::loadu(x + d + 3 * W) * Vec::loadu(w + d + 3 * W);
    }
    acc = (acc + acc1) + (acc2 + acc3);
    for (; d + W <= D; d += W) acc = acc + Vec::loadu(x + d) * Vec::loadu(w + d);
    scalar_t lanes[W];
    acc.store(lanes);
    scalar_t s = 0;
    for (int64_t l = 0; l < W; ++l) s += lanes[l];
    for (; d < D; ++d) s += x[d] * w[d];
    return s;
  }
}

// Accumulates rows [begin, end) of the batch into out (P doubles, added to).
// rows == nullptr: batch row i is X row i; else X row rows[i] (a gather, no copy).
// X row i starts at X + i * ldx, y row i at y + i * ldy.
// kK / kD > 0 fix K / D at compile time so that the inner loops unroll; L is the
// loss (loss_terms.h), delta its parameter (Huber's only).
template <typename scalar_t, Loss L, int kK, int kD>
void accumulate_rows(const scalar_t* X, const scalar_t* y, const int64_t* rows,
                     int64_t begin, int64_t end, int64_t K_in, int64_t D_in, int64_t ldx,
                     int64_t ldy, const scalar_t* weight, const scalar_t* bias, scalar_t delta,
                     double* out) {
  const int64_t K = kK > 0 ? kK : K_in;
  const int64_t D = kD > 0 ? kD : D_in;
  constexpr bool kFixed = kK > 0 && kD > 0;
  // Fixed sizes live in stack arrays the compiler keeps in registers.
  scalar_t fixed_w[kFixed ? kK * kD : 1];
  scalar_t fixed_b[kK > 0 ? kK : 1];
  scalar_t fixed_r[kK > 0 ? kK : 1];
  std::vector<scalar_t> heap;
  scalar_t* acc_w = fixed_w;
  scalar_t* acc_b = fixed_b;
  scalar_t* r = fixed_r;
  if constexpr (!kFixed) {
    heap.assign(K * D + 2 * K, scalar_t(0));
    acc_w = heap.data();
    if constexpr (kK <= 0) {
      acc_b = heap.data() + K * D;
      r = heap.data() + K * D + K;
    }
  }
  for (int64_t row0 = begin; row0 < end; row0 += kFlushRows) {
    const int64_t row1 = std::min(end, row0 + kFlushRows);
    scalar_t acc_loss = 0;
    for (int64_t j = 0; j < K * D; ++j) acc_w[j] = 0;
    for (int64_t k = 0; k < K; ++k) acc_b[k] = 0;
    for (int64_t i = row0; i < row1; ++i) {
      const int64_t row = rows == nullptr ? i : rows[i];
      const scalar_t* x = X + row * ldx;
      const scalar_t* t = y + row * ldy;
      for (int64_t k = 0; k < K; ++k) {
        // (x . w - y) + b, in the reference's order
        const scalar_t residual =
            (dot<scalar_t, kD>(x, weight + k * D, D) - t[k]) + (bias ? bias[k] : scalar_t(0));
        acc_loss += loss_value<L>(residual, delta);
        r[k] = loss_factor<L>(residual, delta);
        acc_b[k] += r[k];
      }
      for (int64_t k = 0; k < K; ++k) {
        scalar_t* aw = acc_w + k * D;
        const scalar_t rk = r[k];
        for (int64_t d = 0; d < D; ++d) aw[d] += rk * x[d];
      }
    }
    out[0] += acc_loss;
    for (int64_t k = 0; k < K; ++k) out[1 + k] += acc_b[k];
    for (int64_t j = 0; j < K * D; ++j) out[1 + K + j] += acc_w[j];
  }
}

template <typename scalar_t, Loss L, int kK>
AccumulateFn<scalar_t> pick_for_d(int64_t D) {
  switch (D) {
    case 1: return &accumulate_rows<scalar_t, L, kK, 1>;
    case 2: return &accumulate_rows<scalar_t, L, kK, 2>;
    case 3: return &accumulate_rows<scalar_t, L, kK, 3>;
    case 4: return &accumulate_rows<scalar_t, L, kK, 4>;
    case 8: return &accumulate_rows<scalar_t, L, kK, 8>;
    case 16: return &accumulate_rows<scalar_t, L, kK, 16>;
    case 32: return &accumulate_rows<scalar_t, L, kK, 32>;
    default: return &accumulate_rows<scalar_t, L, kK, 0>;
  }
}

// The specialised accumulator for this loss and (K, D), or the general one.
template <typename scalar_t, Loss L>
AccumulateFn<scalar_t> pick_accumulate(int64_t K, int64_t D) {
  return K == 1 ? pick_for_d<scalar_t, L, 1>(D) : pick_for_d<scalar_t, L, 0>(D);
}

}  // namespace PYFIT_ISA

