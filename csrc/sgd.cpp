// Fused SGD: every param of one step in a single parallel region over the
// concatenation of their elements, with torch.optim.SGD's semantics.
#include "pyfit.h"

#include <algorithm>

namespace pyfit {
namespace {

using at::vec::Vectorized;

// One param's slice of the concatenated element space, as raw contiguous storage.
struct Segment {
  void* param;
  void* grad;
  void* buf;  // nullptr without momentum
  int64_t numel;
  at::ScalarType dtype;
  bool first;
};

template <typename scalar_t>
void sgd_range(const Segment& s, int64_t begin, int64_t end, const SgdCoefficients& c,
               bool zero_grads) {
  using Vec = Vectorized<scalar_t>;
  constexpr int64_t W = Vec::size();
  scalar_t* p = static_cast<scalar_t*>(s.param);
  scalar_t* g = static_cast<scalar_t*>(s.grad);
  scalar_t* b = static_cast<scalar_t*>(s.buf);
  const bool has_buf = b != nullptr;
  int64_t i = begin;
  for (; i + W <= end; i += W) {
    Vec buf = has_buf ? Vec::loadu(b + i) : Vec(scalar_t(0));
    const Vec out = sgd_step<Vec, scalar_t>(Vec::loadu(p + i), Vec::loadu(g + i), buf, s.first, c);
    out.store(p + i);
    if (has_buf) buf.store(b + i);
    if (zero_grads) Vec(scalar_t(0)).store(g + i);
  }
  for (; i < end; ++i) {
    scalar_t buf = has_buf ? b[i] : scalar_t(0);
    p[i] = sgd_step<scalar_t, scalar_t>(p[i], g[i], buf, s.first, c);
    if (has_buf) b[i] = buf;
    if (zero_grads) g[i] = scalar_t(0);
  }
}

void sgd_update_cpu(at::TensorList params, at::TensorList grads,
                    at::TensorList momentum_buffers, const c10::List<bool>& first_step, double lr,
                    double momentum, double dampening, bool nesterov, double weight_decay,
                    bool maximize, bool zero_grads) {
  const size_t count = params.size();
  const bool use_buf = momentum != 0;
  TORCH_CHECK(grads.size() == count, "sgd_update_ takes one grad per param: expected ", count,
              " grads, got ", grads.size());
  TORCH_CHECK(!use_buf || momentum_buffers.size() == count,
              "with momentum, sgd_update_ takes one buffer per param: expected ", count,
              " buffers, got ", momentum_buffers.size());
  TORCH_CHECK(first_step.size() == count, "sgd_update_ takes one first_step flag per param: ",
              "expected ", count, ", got ", first_step.size());
  const SgdCoefficients coeffs{lr, momentum, dampening, weight_decay, nesterov, maximize};

  // Non-contiguous tensors are updated through contiguous copies that are written
  // back afterwards, so callers still see their own tensors change in place.
  std::vector<at::Tensor> work_p(count), work_g(count), work_b(count);
  std::vector<Segment> segments;
  std::vector<int64_t> offsets{0};
  segments.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    const at::Tensor& p = params[i];
    const at::Tensor& g = grads[i];
    check_cpu(p, "params[i]");
    check_floating(p, "params[i]");
    check_like(g, "grads[i]", p, "params[i]");
    TORCH_CHECK(g.sizes() == p.sizes(), "grads[", i, "] must have params[", i, "]'s shape ",
                p.sizes(), ", got ", g.sizes());
    work_p[i] = p.contiguous();
    work_g[i] = g.contiguous();
    if (use_buf) {
      const at::Tensor& b = momentum_buffers[i];
      check_like(b, "momentum_buffers[i]", p, "params[i]");
      TORCH_CHECK(b.sizes() == p.sizes(), "momentum_buffers[", i, "] must have params[", i,
                  "]'s shape ", p.sizes(), ", got ", b.sizes());
      work_b[i] = b.contiguous();
    }
    segments.push_back(Segment{work_p[i].data_ptr(), work_g[i].data_ptr(),
                               use_buf ? work_b[i].data_ptr() : nullptr, p.numel(),
                               p.scalar_type(), first_step.get(i)});
    offsets.push_back(offsets.back() + p.numel());
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
        sgd_range<float>(seg, lo, hi, coeffs, zero_grads);
      } else {
        sgd_range<double>(seg, lo, hi, coeffs, zero_grads);
      }
      pos = stop;
    }
  });

  for (size_t i = 0; i < count; ++i) {
    if (!work_p[i].is_same(params[i])) params[i].copy_(work_p[i]);
    if (use_buf && !work_b[i].is_same(momentum_buffers[i])) momentum_buffers[i].copy_(work_b[i]);
    if (zero_grads && !work_g[i].is_same(grads[i])) grads[i].zero_();
  }
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfit, CPU, m) { m.impl("sgd_update_", &sgd_update_cpu); }

}  // namespace pyfit
