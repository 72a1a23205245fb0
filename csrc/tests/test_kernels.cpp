// Unit tests of the CPU kernels against closed forms and plain loops, called through
// the dispatcher as Python would. Plain checks: a failure prints what was expected
// and what came, and the exit status is nonzero.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cmath>
#include <cstdio>
#include <vector>

namespace {

int failures = 0;

void expect_near(const char* what, double got, double expected, double tol) {
  if (!(std::abs(got - expected) <= tol * (1 + std::abs(expected)))) {
    std::fprintf(stderr, "FAIL %s: expected %.17g, got %.17g\n", what, expected, got);
    ++failures;
  }
}

c10::OperatorHandle op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
}

void test_mse() {
  // pred = i, target = 0 over n = 1001 elements: sum of squares is n(n-1)(2n-1)/6
  const int64_t n = 1001;
  at::Tensor pred = at::arange(n, at::kDouble), target = at::zeros({n}, at::kDouble);
  auto out = op("pyfit::mse_loss_fwd").typed<std::tuple<at::Tensor, at::Tensor>(
      const at::Tensor&, const at::Tensor&, int64_t)>().call(pred, target, 0);
  const double sum_sq = double(n) * (n - 1) * (2 * n - 1) / 6;
  expect_near("mse mean loss", std::get<0>(out).item<double>(), sum_sq / n, 1e-14);
  expect_near("mse grad[7]", std::get<1>(out)[7].item<double>(), 2.0 * 7 / n, 1e-14);
}

void test_sgd() {
  // 3 tensors, one param each step: p - lr * (g + wd p) with first-step momentum
  std::vector<at::Tensor> ps, gs, bs;
  for (int64_t len : {1, 9, 40000}) {
    ps.push_back(at::full({len}, 2.0, at::kFloat));
    gs.push_back(at::full({len}, 0.5, at::kFloat));
    bs.push_back(at::empty({len}, at::kFloat));
  }
  c10::List<bool> first({true, true, true});
  op("pyfit::sgd_update_").typed<void(at::TensorList, at::TensorList, at::TensorList,
                                      const c10::List<bool>&, double, double, double, bool,
                                      double, bool, bool)>()
      .call(ps, gs, bs, first, 0.1, 0.9, 0.0, false, 0.25, false, true);
  for (size_t i = 0; i < ps.size(); ++i) {
    const int64_t last = ps[i].numel() - 1;
    expect_near("sgd param", ps[i][last].item<double>(), 2.0 - 0.1 * (0.5 + 0.25 * 2.0), 1e-6);
    expect_near("sgd buffer", bs[i][last].item<double>(), 0.5 + 0.25 * 2.0, 1e-6);
    expect_near("sgd zeroed grad", gs[i][last].item<double>(), 0.0, 0.0);
  }
}

using LinearFit = at::Tensor(const at::Tensor&, const at::Tensor&, at::TensorList,
                             at::TensorList, const at::Tensor&, const std::optional<at::Tensor>&,
                             int64_t, int64_t, int64_t, double, int64_t, c10::ArrayRef<double>,
                             int64_t);

void test_linear_fit() {
  // y = 3 x + 1 exactly: at weight 3, bias 1 the loss and the gradients vanish;
  // at zero the mean loss is mean((3x+1)^2), checked against a loop.
  const int64_t n = 1003;
  at::Tensor X = at::linspace(-1, 1, n, at::kDouble).unsqueeze(1);
  at::Tensor y = 3 * X + 1;
  at::Tensor w = at::zeros({1, 1}, at::kDouble), b = at::zeros({1}, at::kDouble);
  double expected = 0;
  for (int64_t i = 0; i < n; ++i) expected += std::pow(y[i][0].item<double>(), 2);
  auto fit = op("pyfit::linear_fit_").typed<LinearFit>();
  const std::vector<double> sgd(13, 0.0);
  at::Tensor lr0 = at::zeros({1}, at::kDouble), lr = at::full({1}, 0.5, at::kDouble);
  at::Tensor loss = fit.call(X, y, {w, b}, {}, lr0, std::nullopt, 0, 0, 0, 1.0, 0, sgd, 0);
  expect_near("linear loss at zero", loss.item<double>(), expected / n, 1e-12);
  w.fill_(3.0);
  b.fill_(1.0);
  loss = fit.call(X, y, {w, b}, {}, lr, std::nullopt, 0, 0, 0, 1.0, 0, sgd, 0);
  expect_near("linear loss at optimum", loss.item<double>(), 0.0, 1e-12);
  expect_near("weight stays at optimum", w.item<double>(), 3.0, 1e-12);
  expect_near("bias stays at optimum", b.item<double>(), 1.0, 1e-12);

  // Adam's first step moves each param by lr against the sign of its grad (m/sqrt(v)
  // = sign(g) up to eps): from weight 0, bias 0 toward 3 and 1.
  std::vector<double> adam(13, 0.0);
  adam[5] = 0.9, adam[6] = 0.999, adam[7] = 1e-8;
  w.zero_();
  b.zero_();
  std::vector<at::Tensor> state;
  for (int i = 0; i < 4; ++i) state.push_back(at::zeros(i < 2 ? w.sizes() : b.sizes(), at::kDouble));
  fit.call(X, y, {w, b}, state, at::full({1}, 0.01, at::kDouble), std::nullopt, 0, 0, 0, 1.0, 1,
           adam, 0);
  expect_near("adam's first weight step", w.item<double>(), 0.01, 1e-6);
  expect_near("adam's first bias step", b.item<double>(), 0.01, 1e-6);
}

}  // namespace

int main() {
  test_mse();
  test_sgd();
  test_linear_fit();
  if (failures) std::fprintf(stderr, "%d check(s) failed\n", failures);
  else std::printf("all kernel checks passed\n");
  return failures ? 1 : 0;
}
