// Fused SGD: every param of one step in a single parallel region over the
// concatenation of their elements, with torch.optim.SGD's semantics.
#include "arguments.h"
#include "pyfit.h"

#include <algorithm>

namespace pyfit {
namespace {

// One param's slice of the concatenated element space, as raw contiguous storage.
struct Segment {
  void* param;
  void* grad;
  void* buf;  // nullptr without momentum
  int64_t numel;
  at::ScalarType dtype;
  bool first;
};

// The update over one contiguous range, as a plain loop that the compiler
// vectorizes. at::vec in an extension is compiled for the baseline ISA only, which
// made this loop compute bound; so the loop is built twice, once for AVX2+FMA
// (picked at run time when the CPU has it) and once for the baseline. The flags
// are template parameters so that each variant is a branch-free loop. It is
// torch.optim.SGD's rule as written once in update_rules.h (rules::sgd), kept in
// this form here: that per-element rule reads its flags at run time, which keeps
// this loop from vectorizing.
template <typename T, bool Decay, bool Momentum, bool First, bool Nesterov>
__attribute__((always_inline)) inline void sgd_loop(T* __restrict p, T* __restrict g,
                                                    T* __restrict b, int64_t n, T sign, T neg_lr,
                                                    T decay, T momentum, T one_minus_dampening,
                                                    bool zero_grads) {
  for (int64_t i = 0; i < n; ++i) {
    T d_p = sign * g[i];
    if (Decay) d_p = d_p + decay * p[i];
    if (Momentum) {
      const T buf = First ? d_p : b[i] * momentum + one_minus_dampening * d_p;
      b[i] = buf;
      d_p = Nesterov ? d_p + momentum * buf : buf;
    }
    p[i] = p[i] + neg_lr * d_p;
  }
  if (zero_grads) std::fill(g, g + n, T(0));
}

template <typename T, bool Decay, bool Momentum, bool First, bool Nesterov>
__attribute__((target("avx2,fma"))) void sgd_loop_avx2(T* p, T* g, T* b, int64_t n, T sign,
                                                       T neg_lr, T decay, T momentum, T damp,
                                                       bool zero_grads) {
  sgd_loop<T, Decay, Momentum, First, Nesterov>(p, g, b, n, sign, neg_lr, decay, momentum, damp,
                                                zero_grads);
}

template <typename T, bool Decay, bool Momentum, bool First, bool Nesterov>
void sgd_loop_base(T* p, T* g, T* b, int64_t n, T sign, T neg_lr, T decay, T momentum, T damp,
                   bool zero_grads) {
  sgd_loop<T, Decay, Momentum, First, Nesterov>(p, g, b, n, sign, neg_lr, decay, momentum, damp,
                                                zero_grads);
}

inline bool cpu_has_avx2() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

template <typename T, bool Decay, bool Momentum, bool First, bool Nesterov>
void sgd_loop_for_cpu(const Segment& s, int64_t lo, int64_t hi, const OptimizerSettings& c,
                      double lr, bool zero_grads) {
  T* p = static_cast<T*>(s.param) + lo;
  T* g = static_cast<T*>(s.grad) + lo;
  T* b = s.buf ? static_cast<T*>(s.buf) + lo : nullptr;
  const T sign = c.maximize ? T(-1) : T(1);
  auto loop = cpu_has_avx2() ? &sgd_loop_avx2<T, Decay, Momentum, First, Nesterov>
                             : &sgd_loop_base<T, Decay, Momentum, First, Nesterov>;
  loop(p, g, b, hi - lo, sign, static_cast<T>(-lr), static_cast<T>(c.weight_decay),
       static_cast<T>(c.momentum), static_cast<T>(1 - c.dampening), zero_grads);
}

template <typename T>
void sgd_range(const Segment& s, int64_t lo, int64_t hi, const OptimizerSettings& c, double lr,
               bool zero_grads) {
  const bool decay = c.weight_decay != 0, momentum = c.momentum != 0;
  // (decay, momentum, first, nesterov) -> one of the compiled variants
  using Fn = void (*)(const Segment&, int64_t, int64_t, const OptimizerSettings&, double, bool);
  static const Fn variants[16] = {
#define PYFIT_V(i) &sgd_loop_for_cpu<T, bool((i) & 8), bool((i) & 4), bool((i) & 2), bool((i) & 1)>
      PYFIT_V(0),  PYFIT_V(1),  PYFIT_V(2),  PYFIT_V(3),  PYFIT_V(4),  PYFIT_V(5),
      PYFIT_V(6),  PYFIT_V(7),  PYFIT_V(8),  PYFIT_V(9),  PYFIT_V(10), PYFIT_V(11),
      PYFIT_V(12), PYFIT_V(13), PYFIT_V(14), PYFIT_V(15),
#undef PYFIT_V
  };
  const int index = (decay ? 8 : 0) | (momentum ? 4 : 0) | (momentum && s.first ? 2 : 0) |
                    (momentum && c.nesterov ? 1 : 0);
  variants[index](s, lo, hi, c, lr, zero_grads);
}

void sgd_update_cpu(at::TensorList params, at::TensorList grads,
                    at::TensorList momentum_buffers, const c10::List<bool>& first_step, double lr,
                    double momentum, double dampening, bool nesterov, double weight_decay,
                    bool maximize, bool zero_grads) {
  // Non-contiguous tensors are updated through contiguous copies that are written
  // back afterwards, so callers still see their own tensors change in place.
  const SgdArgs work = prepare_sgd(params, grads, momentum_buffers, first_step, momentum,
                                   zero_grads, c10::DeviceType::CPU);
  const OptimizerSettings coeffs =
      make_sgd_settings(momentum, dampening, nesterov, weight_decay, maximize);
  const size_t count = params.size();
  const bool use_buf = momentum != 0;
  std::vector<Segment> segments;
  std::vector<int64_t> offsets{0};
  segments.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    segments.push_back(Segment{work.params[i].data_ptr(), work.grads[i].data_ptr(),
                               use_buf ? work.buffers[i].data_ptr() : nullptr,
                               params[i].numel(), params[i].scalar_type(), first_step.get(i)});
    offsets.push_back(offsets.back() + params[i].numel());
  }
  const int64_t total = offsets.back();

  at::parallel_for(0, total, kElementwiseGrain, [&](int64_t begin, int64_t end) {
    // first segment whose range ends after `begin`
    size_t s = std::upper_bound(offsets.begin(), offsets.end(), begin) - offsets.begin() - 1;
    for (int64_t pos = begin; pos < end; ++s) {
      const int64_t stop = std::min(end, offsets[s + 1]);
      const Segment& seg = segments[s];
      const int64_t lo = pos - offsets[s], hi = stop - offsets[s];
      if (seg.dtype == at::kFloat) {
        sgd_range<float>(seg, lo, hi, coeffs, lr, zero_grads);
      } else {
        sgd_range<double>(seg, lo, hi, coeffs, lr, zero_grads);
      }
      pos = stop;
    }
  });
  write_back_sgd(work, params, grads, momentum_buffers, zero_grads);
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfit, CPU, m) { m.impl("sgd_update_", &sgd_update_cpu); }

}  // namespace pyfit
