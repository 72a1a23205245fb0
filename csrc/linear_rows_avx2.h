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
                       int64_t end, int64_t /*K*/, int64_t /*D*/, int64_t ldx, int64_t ldy,
                       const float* weight, const float* bias, float delta, double* out) {
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
        x[j] = X + row * ldx;
        yt[j] = y[row * ldy];
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
      const float* xr = X + row * ldx;
      float dot = 0;
      for (int d = 0; d < D; ++d) dot += xr[d] * weight[d];
      const float residual = (dot - y[row * ldy]) + b;
      out[0] += loss_value<L>(residual, delta);
      const float r = loss_factor<L>(residual, delta);
      out[1] += r;
      for (int d = 0; d < D; ++d) grad_w[d] += r * xr[d];
    }
  }
}

// AVX2 kernel for float32 and any (K, D): a small GEMM micro-kernel over tiles of
// kR rows. Both halves of a step work on blocks of kR rows x kC outputs (kR * kC ==
// 8, one register each, eight independent FMA chains):
// - dots: the 8 dot products of a block, summed along D in 8 accumulators and
//   reduced together by sum_lanes_8x8;
// - gradient: grad_w[k, :] += sum over the tile's rows of f(r[j, k]) x[j, :], so
//   each accumulator element is loaded and stored once per tile, not once per row.
// A short last tile repeats its first row with factor 0, and an output block past
// K reads weight row 0 and writes a scratch row, so no tail needs its own code;
// D % 8 is handled by masked loads and stores.
template <Loss L, int kR>
void accumulate_tiles_f32(const float* X, const float* y, const int64_t* rows, int64_t begin,
                          int64_t end, int64_t K, int64_t D, int64_t ldx, int64_t ldy,
                          const float* weight, const float* bias, float delta, double* out) {
  constexpr int kC = 8 / kR;
  static_assert(kR * kC == 8 && kFlushRows % kR == 0, "a block is 8 dots; stretches hold whole tiles");
  const int64_t K_padded = ceil_div(K, int64_t{kC}) * kC;
  // (K_padded, D) float sums of this stretch; rows past K are scratch
  std::vector<float> acc_w(K_padded * D), acc_b(K);
  const int64_t D8 = D - D % 8;
  alignas(32) int32_t tail_lanes[8];
  for (int l = 0; l < 8; ++l) tail_lanes[l] = l < D % 8 ? -1 : 0;
  const __m256i tail = _mm256_load_si256(reinterpret_cast<const __m256i*>(tail_lanes));
  const float* xs[kR];
  const float* ys[kR];
  alignas(32) float dots[8];
  std::vector<float> factor(kR * K_padded);  // (kR, K_padded): f(r) of the tile, 0 where absent
  for (int64_t row0 = begin; row0 < end; row0 += kFlushRows) {
    const int64_t row1 = std::min(end, row0 + kFlushRows);
    std::fill(acc_w.begin(), acc_w.end(), 0.f);
    std::fill(acc_b.begin(), acc_b.end(), 0.f);
    float acc_loss = 0;
    for (int64_t i0 = row0; i0 < row1; i0 += kR) {
      const int live = static_cast<int>(std::min<int64_t>(kR, row1 - i0));
      for (int j = 0; j < kR; ++j) {
        const int64_t i = i0 + (j < live ? j : 0);
        const int64_t row = rows ? rows[i] : i;
        xs[j] = X + row * ldx;
        ys[j] = y + row * ldy;
      }
      // residuals of the tile, kC outputs at a time
      for (int64_t k0 = 0; k0 < K_padded; k0 += kC) {
        const float* ws[kC];
        for (int c = 0; c < kC; ++c) ws[c] = weight + (k0 + c < K ? k0 + c : 0) * D;
        __m256 s[8];
        for (int b = 0; b < 8; ++b) s[b] = _mm256_setzero_ps();
        for (int64_t d = 0; d < D8; d += 8) {
          __m256 w[kC];
          for (int c = 0; c < kC; ++c) w[c] = _mm256_loadu_ps(ws[c] + d);
          for (int j = 0; j < kR; ++j) {
            const __m256 x = _mm256_loadu_ps(xs[j] + d);
            for (int c = 0; c < kC; ++c) s[j * kC + c] = _mm256_fmadd_ps(x, w[c], s[j * kC + c]);
          }
        }
        if (D8 < D) {
          __m256 w[kC];
          for (int c = 0; c < kC; ++c) w[c] = _mm256_maskload_ps(ws[c] + D8, tail);
          for (int j = 0; j < kR; ++j) {
            const __m256 x = _mm256_maskload_ps(xs[j] + D8, tail);
            for (int c = 0; c < kC; ++c) s[j * kC + c] = _mm256_fmadd_ps(x, w[c], s[j * kC + c]);
          }
        }
        _mm256_store_ps(dots, sum_lanes_8x8(s));
        for (int j = 0; j < kR; ++j) {
          for (int c = 0; c < kC; ++c) {
            const int64_t k = k0 + c;
            float f = 0;
            if (j < live && k < K) {
              // (x . w - y) + b, in the reference's order
              const float residual = (dots[j * kC + c] - ys[j][k]) + (bias ? bias[k] : 0.f);
              acc_loss += loss_value<L>(residual, delta);
              f = loss_factor<L>(residual, delta);
              acc_b[k] += f;
            }
            factor[j * K_padded + k] = f;
          }
        }
      }
      // grad_w[k, :] += sum_j factor[j, k] x[j, :], kC outputs at a time
      for (int64_t k0 = 0; k0 < K_padded; k0 += kC) {
        __m256 f[kR][kC];
        for (int j = 0; j < kR; ++j)
          for (int c = 0; c < kC; ++c) f[j][c] = _mm256_set1_ps(factor[j * K_padded + k0 + c]);
        float* aw = acc_w.data() + k0 * D;
        for (int64_t d = 0; d < D8; d += 8) {
          __m256 a[kC];
          for (int c = 0; c < kC; ++c) a[c] = _mm256_loadu_ps(aw + c * D + d);
          for (int j = 0; j < kR; ++j) {
            const __m256 x = _mm256_loadu_ps(xs[j] + d);
            for (int c = 0; c < kC; ++c) a[c] = _mm256_fmadd_ps(f[j][c], x, a[c]);
          }
          for (int c = 0; c < kC; ++c) _mm256_storeu_ps(aw + c * D + d, a[c]);
        }
        if (D8 < D) {
          __m256 a[kC];
          for (int c = 0; c < kC; ++c) a[c] = _mm256_maskload_ps(aw + c * D + D8, tail);
          for (int j = 0; j < kR; ++j) {
            const __m256 x = _mm256_maskload_ps(xs[j] + D8, tail);
            for (int c = 0; c < kC; ++c) a[c] = _mm256_fmadd_ps(f[j][c], x, a[c]);
          }
          for (int c = 0; c < kC; ++c) _mm256_maskstore_ps(aw + c * D + D8, tail, a[c]);
        }
      }
    }
    out[0] += acc_loss;
    for (int64_t k = 0; k < K; ++k) out[1 + k] += acc_b[k];
    for (int64_t j = 0; j < K * D; ++j) out[1 + K + j] += acc_w[j];
  }
}

// AVX2 kernel for float32, several outputs (K >= 2) and few features (D = kD < 8):
// vectors run along the outputs instead. Per row, the K predictions are kD
// broadcast FMAs on rows of the transposed weights, the K targets one contiguous
// (masked) load, and the gradient sums, (kD, K) transposed, kD FMAs more: no
// horizontal sums and no lanes wasted on a feature axis shorter than a vector.
// Padded outputs (K up to a multiple of 8) have weight, bias and target 0, hence
// residual, value and factor 0 under every loss.
template <Loss L, int kD>
void accumulate_narrow_f32(const float* X, const float* y, const int64_t* rows, int64_t begin,
                           int64_t end, int64_t K, int64_t /*D*/, int64_t ldx, int64_t ldy,
                           const float* weight, const float* bias, float delta, double* out) {
  const int64_t V = ceil_div(K, int64_t{8});  // vectors per row of outputs
  std::vector<float> w_t(kD * V * 8, 0.f), b_pad(V * 8, 0.f), acc(kD * V * 8), acc_b(V * 8);
  for (int64_t k = 0; k < K; ++k) {
    for (int d = 0; d < kD; ++d) w_t[d * V * 8 + k] = weight[k * kD + d];
    if (bias) b_pad[k] = bias[k];
  }
  alignas(32) int32_t last_lanes[8];
  for (int l = 0; l < 8; ++l) last_lanes[l] = l < K - (V - 1) * 8 ? -1 : 0;
  const __m256i last = _mm256_load_si256(reinterpret_cast<const __m256i*>(last_lanes));
  const __m256 delta_v = _mm256_set1_ps(delta);
  for (int64_t row0 = begin; row0 < end; row0 += kFlushRows) {
    const int64_t row1 = std::min(end, row0 + kFlushRows);
    std::fill(acc.begin(), acc.end(), 0.f);
    std::fill(acc_b.begin(), acc_b.end(), 0.f);
    __m256 gl = _mm256_setzero_ps();
    for (int64_t i = row0; i < row1; ++i) {
      const int64_t row = rows ? rows[i] : i;
      __m256 x[kD];
      for (int d = 0; d < kD; ++d) x[d] = _mm256_broadcast_ss(X + row * ldx + d);
      const float* t = y + row * ldy;
      for (int64_t v = 0; v < V; ++v) {
        __m256 dot = _mm256_mul_ps(x[0], _mm256_loadu_ps(w_t.data() + v * 8));
        for (int d = 1; d < kD; ++d)
          dot = _mm256_fmadd_ps(x[d], _mm256_loadu_ps(w_t.data() + (d * V + v) * 8), dot);
        const __m256 target = v + 1 < V ? _mm256_loadu_ps(t + v * 8) : _mm256_maskload_ps(t + v * 8, last);
        // (x . w - y) + b, in the reference's order
        const __m256 residual = _mm256_add_ps(_mm256_sub_ps(dot, target), _mm256_loadu_ps(b_pad.data() + v * 8));
        const __m256 f = loss_terms_8<L>(residual, delta_v, gl);
        _mm256_storeu_ps(acc_b.data() + v * 8, _mm256_add_ps(_mm256_loadu_ps(acc_b.data() + v * 8), f));
        for (int d = 0; d < kD; ++d) {
          float* a = acc.data() + (d * V + v) * 8;
          _mm256_storeu_ps(a, _mm256_fmadd_ps(x[d], f, _mm256_loadu_ps(a)));
        }
      }
    }
    add_lanes(out, gl);
    for (int64_t k = 0; k < K; ++k) {
      out[1 + k] += acc_b[k];
      for (int d = 0; d < kD; ++d) out[1 + K + k * kD + d] += acc[d * V * 8 + k];
    }
  }
}

template <Loss L>
AccumulateFn<float> pick_narrow(int64_t D) {
  switch (D) {
    case 1: return &accumulate_narrow_f32<L, 1>;
    case 2: return &accumulate_narrow_f32<L, 2>;
    case 3: return &accumulate_narrow_f32<L, 3>;
    case 4: return &accumulate_narrow_f32<L, 4>;
    case 5: return &accumulate_narrow_f32<L, 5>;
    case 6: return &accumulate_narrow_f32<L, 6>;
    default: return &accumulate_narrow_f32<L, 7>;
  }
}

// The float32 kernel for (K, D), or nullptr: the 8-row one for K == 1 and D of 8,
// 16 or 32; for D >= 8 the tiled one (4 rows x 2 outputs, or 8 rows x 1 output for
// K == 1); for D < 8 and several outputs the one with vectors along the outputs.
// Below 8 features and one output, the compile-time-D loops of linear_rows.h.
template <typename scalar_t, Loss L>
AccumulateFn<scalar_t> pick_special(int64_t K, int64_t D) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (K == 1 && D == 8) return &accumulate_k1_f32<L, 1>;
    if (K == 1 && D == 16) return &accumulate_k1_f32<L, 2>;
    if (K == 1 && D == 32) return &accumulate_k1_f32<L, 4>;
    if (D >= 8) return K == 1 ? &accumulate_tiles_f32<L, 8> : &accumulate_tiles_f32<L, 4>;
    if (K >= 2) return pick_narrow<L>(D);
  }
  return nullptr;
}
