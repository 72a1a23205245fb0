// The hyperparameters of one optimizer step, as the ops receive them: a loss code,
// an optimizer code and a fixed vector of 13 settings (the layout below, shared
// with pyfit/ops' SETTING_NAMES). Plain data without torch, so that the CUDA
// kernels take it by value; the one function that builds it from the vector and
// checks it is make_optimizer_settings (arguments.h).
#pragma once

#include <cstdint>

namespace pyfit {

enum class Loss : int64_t { Squared = 0, Absolute = 1, Huber = 2 };
enum class Optimizer : int64_t { Sgd = 0, Adam = 1, Rmsprop = 2, Adagrad = 3 };

// Positions in the settings vector; absent settings are 0, booleans 0 or 1.
enum Setting : int {
  kMomentum = 0,  // SGD's and RMSprop's
  kDampening,
  kNesterov,
  kWeightDecay,
  kMaximize,
  kBeta1,
  kBeta2,
  kEps,  // Adam's, RMSprop's and Adagrad's
  kAmsgrad,
  kDecoupledWeightDecay,  // AdamW = Adam with this set
  kAlpha,
  kCentered,
  kLrDecay,
  kSettingCount  // 13
};

struct OptimizerSettings {
  Optimizer optimizer;
  double momentum, dampening, weight_decay;
  bool nesterov, maximize;
  double beta1, beta2, eps;
  bool amsgrad, decoupled_weight_decay;
  double alpha;
  bool centered;
  double lr_decay;

  // State tensors per param, in the order of the op's state list:
  //   SGD [momentum_buffer if momentum != 0]; Adam [exp_avg, exp_avg_sq, max_exp_avg_sq
  //   if amsgrad]; RMSprop [square_avg, momentum_buffer if momentum > 0, grad_avg if
  //   centered]; Adagrad [sum].
  int state_per_param() const {
    switch (optimizer) {
      case Optimizer::Sgd: return momentum != 0 ? 1 : 0;
      case Optimizer::Adam: return amsgrad ? 3 : 2;
      case Optimizer::Rmsprop: return 1 + (momentum > 0 ? 1 : 0) + (centered ? 1 : 0);
      case Optimizer::Adagrad: return 1;
    }
    return 0;
  }
};

}  // namespace pyfit
