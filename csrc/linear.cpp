// The fused fit of a linear model y ≈ X @ weight.T + bias: per step one read of
// the batch's rows (linear_kernel.h, for the squared, absolute or Huber loss), then
// the small update of the params and the optimizer's state (update_rules.h),
// undone when it leaves a param non-finite. The whole epoch loop runs here. Also
// the same row pass alone (linear_sums): the unscaled sums, for callers that add
// them over chunks or processes before one update.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

#include "arguments.h"
#include "linear_kernel.h"
#include "update_rules.h"

namespace pyfit {
namespace {

template <typename scalar_t>
bool all_finite(const scalar_t* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(v[i])) return false;
  return true;
}

// Raw views of the params and their state, plus scratch space reused by every step.
template <typename scalar_t>
struct Stepper {
  const LinearArgs& a;
  // Per param (weight, then bias if any): its elements, its grads' offset in the
  // partials, and its state tensors' elements (null where the optimizer has fewer).
  struct Target {
    scalar_t* param;
    int64_t numel, grad_offset;
    scalar_t* state[3];
  };
  std::vector<Target> targets;
  std::vector<double> partials, total;
  std::vector<scalar_t> saved;

  explicit Stepper(const LinearArgs& args)
      : a(args), total(linear::partial_size(args.K, args.D)) {
    const int per_param = a.settings.state_per_param();
    for (size_t i = 0; i < a.params.size(); ++i) {
      const bool is_weight = i == 0;
      Target t{a.params[i].data_ptr<scalar_t>(), a.params[i].numel(),
               is_weight ? 1 + a.K : 1, {nullptr, nullptr, nullptr}};
      for (int j = 0; j < per_param; ++j) t.state[j] = a.state[i * per_param + j].data_ptr<scalar_t>();
      targets.push_back(t);
    }
  }

  // Every param and state element, in a fixed order: to save and restore.
  template <typename Fn>
  void for_each_array(Fn fn) {
    for (const Target& t : targets) {
      fn(t.param, t.numel);
      for (scalar_t* s : t.state)
        if (s) fn(s, t.numel);
    }
  }

  // One step on a batch of n rows (rows: gather indices or nullptr) with step
  // scalars c; returns the loss before the update, non-finite when the update was
  // not kept (NaN if only the update overflowed).
  scalar_t step(const scalar_t* X, const scalar_t* y, const int64_t* rows, int64_t n,
                const StepScalars& c) {
    const scalar_t* weight = targets[0].param;
    const scalar_t* bias = targets.size() > 1 ? targets[1].param : nullptr;
    linear::batch_sums<scalar_t>(X, y, rows, n, a.K, a.D, a.D, a.K, weight, bias, a.loss,
                                 static_cast<scalar_t>(a.delta), partials, total.data());
    const double count = static_cast<double>(n) * static_cast<double>(a.K);
    const scalar_t loss = static_cast<scalar_t>(a.mean ? total[0] / count : total[0]);
    if (!std::isfinite(loss)) return loss;
    const double scale = loss_scale(a.loss, a.mean, n, a.K);
    saved.clear();
    for_each_array([&](scalar_t* v, int64_t len) { saved.insert(saved.end(), v, v + len); });
    bool finite = true;
    for (const Target& t : targets) {
      const double* sums = total.data() + t.grad_offset;
      scalar_t* const* s = t.state;
      for (int64_t i = 0; i < t.numel; ++i) {
        const scalar_t g = static_cast<scalar_t>(sums[i] * scale);
        t.param[i] = update_element<scalar_t>(a.settings, c, t.param[i], g, s[0] ? s[0] + i : nullptr,
                                              s[1] ? s[1] + i : nullptr, s[2] ? s[2] + i : nullptr);
      }
      finite = finite && all_finite(t.param, t.numel);
    }
    if (finite) return loss;
    const scalar_t* from = saved.data();
    for_each_array([&](scalar_t* v, int64_t len) {
      std::copy(from, from + len, v);
      from += len;
    });
    return std::numeric_limits<scalar_t>::quiet_NaN();
  }
};

// The epochs of a checked fit (linear_fit_kernel in arguments.h calls it).
at::Tensor run_linear_fit_cpu(const LinearArgs& a) {
  const int64_t epochs = a.epochs, n = a.N, batch = a.batch;
  at::Tensor losses = at::full({epochs}, std::numeric_limits<double>::quiet_NaN(), a.X.options());
  AT_DISPATCH_FLOATING_TYPES(a.X.scalar_type(), "linear_fit_cpu", [&] {
    Stepper<scalar_t> stepper(a);
    const scalar_t* Xp = a.X.const_data_ptr<scalar_t>();
    const scalar_t* yp = a.y.const_data_ptr<scalar_t>();
    const double* lr = a.lrs.const_data_ptr<double>();
    const int64_t* rows = a.order.defined() ? a.order.const_data_ptr<int64_t>() : nullptr;
    scalar_t* out = losses.mutable_data_ptr<scalar_t>();
    int64_t t = a.step;  // steps taken so far
    for (int64_t e = 0; e < epochs; ++e) {
      double total = 0;
      for (int64_t start = 0; start < n; start += batch) {
        const int64_t len = std::min(batch, n - start);
        const StepScalars c = step_scalars(a.settings, lr[e], ++t);
        // Without an order a batch is a slice of X; with one, indices into X.
        const scalar_t batch_loss =
            rows ? stepper.step(Xp, yp, rows + e * n + start, len, c)
                 : stepper.step(Xp + start * a.D, yp + start * a.K, nullptr, len, c);
        if (!std::isfinite(batch_loss)) {
          out[e] = batch_loss;
          return;
        }
        // the mean over the epoch weights each batch's mean by its share of the rows
        const double share = a.mean ? static_cast<double>(len) / n : 1.0;
        total += static_cast<double>(batch_loss) * share;
      }
      out[e] = static_cast<scalar_t>(total);
    }
  });
  return losses;
}

// The sums of a checked linear_sums call (linear_sums_kernel in arguments.h calls it):
// the fit's row pass with its blocking, so equal for any thread count.
at::Tensor run_linear_sums_cpu(const LinearSumsArgs& a) {
  at::Tensor total = at::empty({linear::partial_size(a.K, a.D)}, a.X.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(a.X.scalar_type(), "linear_sums_cpu", [&] {
    std::vector<double> partials;
    const scalar_t* bias = a.params.size() > 1 ? a.params[1].const_data_ptr<scalar_t>() : nullptr;
    linear::batch_sums<scalar_t>(a.X.const_data_ptr<scalar_t>(), a.y.const_data_ptr<scalar_t>(),
                                 a.rows.defined() ? a.rows.const_data_ptr<int64_t>() : nullptr,
                                 a.n, a.K, a.D, a.ldx, a.ldy,
                                 a.params[0].const_data_ptr<scalar_t>(), bias,
                                 a.loss, static_cast<scalar_t>(a.delta), partials,
                                 total.mutable_data_ptr<double>());
  });
  return total;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfit, CPU, m) {
  m.impl("linear_fit_", &linear_fit_kernel<c10::DeviceType::CPU, &run_linear_fit_cpu>);
  m.impl("linear_sums", &linear_sums_kernel<c10::DeviceType::CPU, &run_linear_sums_cpu>);
}

}  // namespace pyfit
