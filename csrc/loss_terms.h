// Each loss's two terms per residual r = pred - target, written once for the CPU
// row pass (linear_rows.h) and the CUDA one (cuda/linear.cu): its value, and the
// factor the row pass sums times x (and times 1 for the bias). The gradient is
// then sums * scale, scale = (2 for squared, else 1) / (rows * K under mean).
#pragma once

#include "update_rules.h"  // Loss, PYFIT_HOST_DEVICE

namespace pyfit {

template <Loss L, typename T>
PYFIT_HOST_DEVICE inline T loss_value(T r, T delta) {
  if constexpr (L == Loss::Squared) {
    return r * r;
  } else if constexpr (L == Loss::Absolute) {
    return r < T(0) ? -r : r;
  } else {
    const T a = r < T(0) ? -r : r;
    return a < delta ? T(0.5) * r * r : delta * (a - T(0.5) * delta);
  }
}

// squared: r (its factor 2 is in the scale); absolute: sign(r), 0 at r == 0 as
// torch's l1_loss backward; huber: r clamped to [-delta, delta] as torch's.
template <Loss L, typename T>
PYFIT_HOST_DEVICE inline T loss_factor(T r, T delta) {
  if constexpr (L == Loss::Squared) {
    return r;
  } else if constexpr (L == Loss::Absolute) {
    return r > T(0) ? T(1) : (r < T(0) ? T(-1) : r);  // r: keeps 0 (and NaN) as is
  } else {
    return r < -delta ? -delta : (r > delta ? delta : r);
  }
}

// Gradient scale of the unscaled sums over `rows` rows of K outputs.
inline double loss_scale(Loss loss, bool mean, int64_t rows, int64_t K) {
  const double factor = loss == Loss::Squared ? 2.0 : 1.0;
  return mean ? factor / (static_cast<double>(rows) * static_cast<double>(K)) : factor;
}

}  // namespace pyfit
