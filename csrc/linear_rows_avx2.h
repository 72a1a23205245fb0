// AVX2 kernel for the common tall-skinny case: one output (K == 1), float32, D of
// 8, 16 or 32. Eight rows at a time: their dot products are reduced together
// with horizontal adds (one vector of 8 residuals), instead of one horizontal sum
// per row, which is what keeps the single read of X at memory speed.
// Included by linear_kernel.h inside namespace pyfit::linear::avx2 under
// `#pragma GCC target("avx2,fma")`; includes nothing itself.

// Lane j of the result is the sum of the 8 lanes of s[j].
inline __m256 sum_lanes_8x8(const __m256 s[8]) {
  const __m256 ab = _mm256_hadd_ps(_mm256_hadd_ps(s[0], s[1]), _mm256_hadd_ps(s[2], s[3]));
  const __m256 cd = _mm256_hadd_ps(_mm256_hadd_ps(s[4], s[5]), _mm256_hadd_ps(s[6], s[7]));
  // ab = [s0..s3 low-half sums | s0..s3 high-half sums], cd likewise for s4..s7
  return _mm256_add_ps(_mm256_permute2f128_ps(ab, cd, 0x20), _mm256_permute2f128_ps(ab, cd, 0x31));
}

inline void add_lanes(double* out, __m256 v) {
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, v);
  for (int l = 0; l < 8; ++l) *out += lanes[l];
}

// The loss's value added into `value`, and its factor (loss_terms.h) returned, for
// eight residuals at once.
template <Loss L>
inline __m256 loss_terms_8(__m256 r, __m256 delta, __m256& value) {
  if constexpr (L == Loss::Squared) {
    value = _mm256_fmadd_ps(r, r, value);
    return r;
  } else {
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.f);
    const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.f), r);  // |r|
    if constexpr (L == Loss::Absolute) {
      value = _mm256_add_ps(value, a);
      const __m256 pos = _mm256_and_ps(_mm256_cmp_ps(r, zero, _CMP_GT_OQ), one);
      const __m256 neg = _mm256_and_ps(_mm256_cmp_ps(r, zero, _CMP_LT_OQ), one);
      return _mm256_sub_ps(pos, neg);
    } else {
      const __m256 half = _mm256_set1_ps(0.5f);
      const __m256 quadratic = _mm256_mul_ps(_mm256_mul_ps(half, r), r);
      const __m256 linear = _mm256_mul_ps(delta, _mm256_sub_ps(a, _mm256_mul_ps(half, delta)));
      const __m256 inside = _mm256_cmp_ps(a, delta, _CMP_LT_OQ);
      value = _mm256_add_ps(value, _mm256_blendv_ps(linear, quadratic, inside));
      const __m256 neg_delta = _mm256_sub_ps(zero, delta);
      return _mm256_min_ps(_mm256_max_ps(r, neg_delta), delta);
    }
  }
}

// Same contract as accumulate_rows (linear_rows.h) for K == 1, D == 8 * kD8.
template <Loss L, int kD8>
void accumulate_k1_f32(const float* X, const float* y, const int64_t* rows, int64_t begin,
                       int64_t end, int64_t /*K*/, int64_t /*D*/, const float* weight,
                       const float* bias, float delta, double* out) {
  constexpr int64_t D = 8 * kD8;
  const float b = bias ? bias[0] : 0.f;
  const __m256 bv = _mm256_set1_ps(b), delta_v = _mm256_set1_ps(delta);
  __m256 wv[kD8];
  for (int c = 0; c < kD8; ++c) wv[c] = _mm256_loadu_ps(weight + 8 * c);
  double* grad_w = out + 2;
  for (int64_t row0 = begin; row0 < end; row0 += kFlushRows) {
    const int64_t row1 = std::min(end, row0 + kFlushRows);
    // two sets of weight-gradient accumulators halve the FMA dependency chain
    __m256 gw[2][kD8];
    for (int c = 0; c < kD8; ++c) gw[0][c] = gw[1][c] = _mm256_setzero_ps();
    __m256 gl = _mm256_setzero_ps(), gb = _mm256_setzero_ps();
    int64_t i = row0;
    for (; i + 8 <= row1; i += 8) {
      const float* x[8];
      alignas(32) float yt[8];
      for (int j = 0; j < 8; ++j) {
        const int64_t row = rows ? rows[i + j] : i + j;
        x[j] = X + row * D;
        yt[j] = y[row];
      }
      __m256 s[8];
      for (int j = 0; j < 8; ++j) {
        __m256 acc = _mm256_mul_ps(_mm256_loadu_ps(x[j]), wv[0]);
        for (int c = 1; c < kD8; ++c) acc = _mm256_fmadd_ps(_mm256_loadu_ps(x[j] + 8 * c), wv[c], acc);
        s[j] = acc;
      }
      // residual = (x . w - y) + b, in the reference's order
      const __m256 residual =
          _mm256_add_ps(_mm256_sub_ps(sum_lanes_8x8(s), _mm256_load_ps(yt)), bv);
      const __m256 r = loss_terms_8<L>(residual, delta_v, gl);  // r: the loss's factor
      gb = _mm256_add_ps(gb, r);
      alignas(32) float rs[8];
      _mm256_store_ps(rs, r);
      for (int j = 0; j < 8; ++j) {
        const __m256 rj = _mm256_set1_ps(rs[j]);
        for (int c = 0; c < kD8; ++c)
          gw[j & 1][c] = _mm256_fmadd_ps(rj, _mm256_loadu_ps(x[j] + 8 * c), gw[j & 1][c]);
      }
    }
    add_lanes(out, gl);
    add_lanes(out + 1, gb);
    for (int c = 0; c < kD8; ++c) {
      alignas(32) float lanes[8];
      _mm256_store_ps(lanes, _mm256_add_ps(gw[0][c], gw[1][c]));
      for (int l = 0; l < 8; ++l) grad_w[8 * c + l] += lanes[l];
    }
    for (; i < row1; ++i) {  // the last < 8 rows of this stretch, one by one
      const int64_t row = rows ? rows[i] : i;
      const float* xr = X + row * D;
      float dot = 0;
      for (int d = 0; d < D; ++d) dot += xr[d] * weight[d];
      const float residual = (dot - y[row]) + b;
      out[0] += loss_value<L>(residual, delta);
      const float r = loss_factor<L>(residual, delta);
      out[1] += r;
      for (int d = 0; d < D; ++d) grad_w[d] += r * xr[d];
    }
  }
}

// This kernel when it fits (K, D) for float32, else nullptr.
template <typename scalar_t, Loss L>
AccumulateFn<scalar_t> pick_special(int64_t K, int64_t D) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (K == 1 && D == 8) return &accumulate_k1_f32<L, 1>;
    if (K == 1 && D == 16) return &accumulate_k1_f32<L, 2>;
    if (K == 1 && D == 32) return &accumulate_k1_f32<L, 4>;
  }
  return nullptr;
}
