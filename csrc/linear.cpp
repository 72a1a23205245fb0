// Fused SGD steps of a linear model y ≈ X @ weight.T + bias under the squared error:
// one read of X per step (linear_kernel.h), then the small update, checked for
// finiteness; linear_fit_ runs the whole epoch loop here.
#include "arguments.h"
#include "linear_kernel.h"

namespace pyfit {
namespace {

template <typename scalar_t>
bool all_finite(const scalar_t* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(v[i])) return false;
  return true;
}

// Raw views of the params plus scratch space reused by every step of a fit.
template <typename scalar_t>
struct Stepper {
  scalar_t* w;
  scalar_t* b;     // nullptr: no bias
  scalar_t* wbuf;  // nullptr: no momentum
  scalar_t* bbuf;
  int64_t K, D;
  std::vector<double> partials, total;
  std::vector<scalar_t> saved;

  explicit Stepper(const LinearArgs& a)
      : w(a.weight.data_ptr<scalar_t>()),
        b(a.bias.defined() ? a.bias.data_ptr<scalar_t>() : nullptr),
        wbuf(a.weight_buf.defined() ? a.weight_buf.data_ptr<scalar_t>() : nullptr),
        bbuf(a.bias_buf.defined() ? a.bias_buf.data_ptr<scalar_t>() : nullptr),
        K(a.K),
        D(a.D),
        total(linear::partial_size(a.K, a.D)) {}

  // In-place SGD on n params with grads g = sums * scale; buf may be nullptr.
  static void update(scalar_t* p, scalar_t* buf, const double* sums, double scale, int64_t n,
                     bool first, const SgdCoefficients& c) {
    for (int64_t i = 0; i < n; ++i) {
      const scalar_t g = static_cast<scalar_t>(sums[i] * scale);
      scalar_t bv = buf ? buf[i] : scalar_t(0);
      p[i] = sgd_step<scalar_t, scalar_t>(p[i], g, bv, first, c);
      if (buf) buf[i] = bv;
    }
  }

  // One step on a batch of n rows (rows: gather indices or nullptr); returns the
  // loss before the update, non-finite when the update was not kept.
  scalar_t step(const scalar_t* X, const scalar_t* y, const int64_t* rows, int64_t n,
                const SgdCoefficients& c, bool first, int64_t reduction) {
    linear::batch_sums<scalar_t>(X, y, rows, n, K, D, w, b, partials, total.data());
    const double count = static_cast<double>(n * K);
    const double scale = reduction == kMean ? 2.0 / count : 2.0;
    const scalar_t loss =
        static_cast<scalar_t>(reduction == kMean ? total[0] / count : total[0]);
    if (!std::isfinite(loss)) return loss;
    const int64_t KD = K * D;
    // Keep the params and buffers to restore them if the update overflows.
    saved.assign(w, w + KD);
    if (b) saved.insert(saved.end(), b, b + K);
    if (wbuf) saved.insert(saved.end(), wbuf, wbuf + KD);
    if (bbuf) saved.insert(saved.end(), bbuf, bbuf + K);
    update(w, wbuf, total.data() + 1 + K, scale, KD, first, c);
    if (b) update(b, bbuf, total.data() + 1, scale, K, first, c);
    if (all_finite(w, KD) && (!b || all_finite(b, K))) return loss;
    const scalar_t* s = saved.data();
    std::copy(s, s + KD, w), s += KD;
    if (b) std::copy(s, s + K, b), s += K;
    if (wbuf) std::copy(s, s + KD, wbuf), s += KD;
    if (bbuf) std::copy(s, s + K, bbuf);
    return std::numeric_limits<scalar_t>::quiet_NaN();
  }
};

at::Tensor linear_step_cpu(const at::Tensor& X, const at::Tensor& y, const at::Tensor& weight,
                           const std::optional<at::Tensor>& bias,
                           const std::optional<at::Tensor>& weight_buf,
                           const std::optional<at::Tensor>& bias_buf, double lr, double momentum,
                           double dampening, bool nesterov, double weight_decay, bool maximize,
                           bool first_step, int64_t reduction) {
  const LinearArgs a = prepare_linear(X, y, weight, bias, weight_buf, bias_buf, momentum,
                                      reduction, c10::DeviceType::CPU);
  const SgdCoefficients c{lr, momentum, dampening, weight_decay, nesterov, maximize};
  at::Tensor loss = at::empty({}, X.options());
  AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "linear_step_cpu", [&] {
    Stepper<scalar_t> stepper(a);
    loss.fill_(stepper.step(a.X.const_data_ptr<scalar_t>(), a.y.const_data_ptr<scalar_t>(),
                            nullptr, a.N, c, first_step, reduction));
  });
  write_back_linear(a, weight, bias, weight_buf, bias_buf);
  return loss;
}

at::Tensor linear_fit_cpu(const at::Tensor& X, const at::Tensor& y, const at::Tensor& weight,
                          const std::optional<at::Tensor>& bias,
                          const std::optional<at::Tensor>& weight_buf,
                          const std::optional<at::Tensor>& bias_buf, const at::Tensor& lrs_in,
                          const std::optional<at::Tensor>& order_in, int64_t batch_size,
                          double momentum, double dampening, bool nesterov, double weight_decay,
                          bool maximize, bool first_step, int64_t reduction) {
  const LinearArgs a = prepare_linear(X, y, weight, bias, weight_buf, bias_buf, momentum,
                                      reduction, c10::DeviceType::CPU);
  const at::Tensor lrs = prepare_lrs(lrs_in);
  const int64_t epochs = lrs.numel(), n = a.N;
  TORCH_CHECK(n > 0 || epochs == 0, "linear_fit_ needs at least one row, got X of shape ",
              X.sizes());
  const at::Tensor order = prepare_order(order_in, epochs, n, X.device());
  const int64_t batch = batch_size <= 0 ? n : std::min(batch_size, n);
  at::Tensor losses = at::full({epochs}, std::numeric_limits<double>::quiet_NaN(), X.options());
  AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "linear_fit_cpu", [&] {
    Stepper<scalar_t> stepper(a);
    const scalar_t* Xp = a.X.const_data_ptr<scalar_t>();
    const scalar_t* yp = a.y.const_data_ptr<scalar_t>();
    const double* lr = lrs.const_data_ptr<double>();
    const int64_t* rows = order.defined() ? order.const_data_ptr<int64_t>() : nullptr;
    scalar_t* out = losses.mutable_data_ptr<scalar_t>();
    bool first = first_step;
    for (int64_t e = 0; e < epochs; ++e) {
      const SgdCoefficients c{lr[e], momentum, dampening, weight_decay, nesterov, maximize};
      double total = 0;
      for (int64_t start = 0; start < n; start += batch) {
        const int64_t len = std::min(batch, n - start);
        // Without an order a batch is a slice of X; with one, indices into X.
        const scalar_t loss =
            rows ? stepper.step(Xp, yp, rows + e * n + start, len, c, first, reduction)
                 : stepper.step(Xp + start * a.D, yp + start * a.K, nullptr, len, c, first,
                                reduction);
        first = false;
        if (!std::isfinite(loss)) {
          out[e] = loss;
          return;
        }
        // the mean over the epoch weights each batch's mean by its share of the rows
        const double share = reduction == kMean ? static_cast<double>(len) / n : 1.0;
        total += static_cast<double>(loss) * share;
      }
      out[e] = static_cast<scalar_t>(total);
    }
  });
  write_back_linear(a, weight, bias, weight_buf, bias_buf);
  return losses;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfit, CPU, m) {
  m.impl("linear_step_", &linear_step_cpu);
  m.impl("linear_fit_", &linear_fit_cpu);
}

}  // namespace pyfit
