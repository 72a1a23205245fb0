// Each optimizer's update of one element, written once for the CPU loop
// (linear.cpp) and the CUDA kernels (cuda/linear.cu, cuda/sgd.cu): torch 2.13's
// single-tensor implementations of SGD, Adam/AdamW, RMSprop and Adagrad, with the
// same terms in the same order, so that float32 rounds close to torch's.
// Plain C++ without torch; the functions are __host__ __device__ under nvcc.
#pragma once

#include <cmath>
#include <cstdint>

#include "optimizer_settings.h"

#ifdef __CUDACC__
#define PYFIT_HOST_DEVICE __host__ __device__
#else
#define PYFIT_HOST_DEVICE
#endif

namespace pyfit {

// What one step (step number t, 1-based, learning rate lr) shares across elements,
// computed once on the host.
struct StepScalars {
  double lr;                     // SGD, RMSprop; Adagrad's decayed lr (clr)
  double step_size;              // Adam: lr / (1 - beta1^t)
  double bias_correction2_sqrt;  // Adam: sqrt(1 - beta2^t)
  bool first;                    // SGD: the momentum buffer holds no history yet (t == 1)
};

inline StepScalars step_scalars(const OptimizerSettings& s, double lr, int64_t t) {
  const double step = static_cast<double>(t);
  StepScalars c{lr, 0.0, 1.0, t == 1};
  if (s.optimizer == Optimizer::Adam) {
    c.step_size = lr / (1 - std::pow(s.beta1, step));
    c.bias_correction2_sqrt = std::pow(1 - std::pow(s.beta2, step), 0.5);
  } else if (s.optimizer == Optimizer::Adagrad) {
    c.lr = lr / (1 + (step - 1) * s.lr_decay);
  }
  return c;
}

namespace rules {

// torch.lerp's formula: the weight's side decides which end the result starts from.
template <typename T>
PYFIT_HOST_DEVICE inline T lerp(T start, T end, double weight) {
  const T w = static_cast<T>(weight);
  return weight < 0.5 ? start + w * (end - start) : end - (end - start) * (T(1) - w);
}

template <typename T>
PYFIT_HOST_DEVICE inline T sgd(const OptimizerSettings& s, const StepScalars& c, T p, T g,
                               T* buf) {
  T d_p = s.maximize ? -g : g;
  if (s.weight_decay != 0) d_p = d_p + static_cast<T>(s.weight_decay) * p;
  if (s.momentum != 0) {
    const T momentum = static_cast<T>(s.momentum);
    *buf = c.first ? d_p : *buf * momentum + static_cast<T>(1 - s.dampening) * d_p;
    d_p = s.nesterov ? d_p + momentum * *buf : *buf;
  }
  return p + static_cast<T>(-c.lr) * d_p;
}

template <typename T>
PYFIT_HOST_DEVICE inline T adam(const OptimizerSettings& s, const StepScalars& c, T p, T g,
                                T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq) {
  T grad = s.maximize ? -g : g;
  if (s.weight_decay != 0) {
    if (s.decoupled_weight_decay) {
      p = p * static_cast<T>(1 - c.lr * s.weight_decay);
    } else {
      grad = grad + static_cast<T>(s.weight_decay) * p;
    }
  }
  *exp_avg = lerp(*exp_avg, grad, 1 - s.beta1);
  *exp_avg_sq = *exp_avg_sq * static_cast<T>(s.beta2) + static_cast<T>(1 - s.beta2) * grad * grad;
  T second = *exp_avg_sq;
  if (s.amsgrad) {
    if (*max_exp_avg_sq < second) *max_exp_avg_sq = second;
    second = *max_exp_avg_sq;
  }
  const T denom = std::sqrt(second) / static_cast<T>(c.bias_correction2_sqrt) +
                  static_cast<T>(s.eps);
  return p + static_cast<T>(-c.step_size) * (*exp_avg / denom);
}

// state: square_avg, then momentum_buffer (momentum > 0), then grad_avg (centered).
template <typename T>
PYFIT_HOST_DEVICE inline T rmsprop(const OptimizerSettings& s, const StepScalars& c, T p, T g,
                                   T* square_avg, T* second, T* third) {
  T grad = s.maximize ? -g : g;
  if (s.weight_decay != 0) grad = grad + static_cast<T>(s.weight_decay) * p;
  *square_avg = *square_avg * static_cast<T>(s.alpha) + static_cast<T>(1 - s.alpha) * grad * grad;
  T* buf = s.momentum > 0 ? second : nullptr;
  T* grad_avg = s.centered ? (s.momentum > 0 ? third : second) : nullptr;
  T avg;
  if (grad_avg) {
    *grad_avg = lerp(*grad_avg, grad, 1 - s.alpha);
    avg = std::sqrt(*square_avg - *grad_avg * *grad_avg);
  } else {
    avg = std::sqrt(*square_avg);
  }
  avg = avg + static_cast<T>(s.eps);
  if (buf) {
    *buf = *buf * static_cast<T>(s.momentum) + grad / avg;
    return p + static_cast<T>(-c.lr) * *buf;
  }
  return p + static_cast<T>(-c.lr) * (grad / avg);
}

template <typename T>
PYFIT_HOST_DEVICE inline T adagrad(const OptimizerSettings& s, const StepScalars& c, T p, T g,
                                   T* sum) {
  T grad = s.maximize ? -g : g;
  if (s.weight_decay != 0) grad = grad + static_cast<T>(s.weight_decay) * p;
  *sum = *sum + grad * grad;
  const T std_dev = std::sqrt(*sum) + static_cast<T>(s.eps);
  return p + static_cast<T>(-c.lr) * (grad / std_dev);
}

}  // namespace rules

// The new value of param element p with grad g; state[0..2] point at this
// element's state values in the layout of OptimizerSettings::state_per_param
// (unused ones may be null), and are updated in place.
template <typename T>
PYFIT_HOST_DEVICE inline T update_element(const OptimizerSettings& s, const StepScalars& c, T p,
                                          T g, T* s0, T* s1, T* s2) {
  switch (s.optimizer) {
    case Optimizer::Sgd: return rules::sgd(s, c, p, g, s0);
    case Optimizer::Adam: return rules::adam(s, c, p, g, s0, s1, s2);
    case Optimizer::Rmsprop: return rules::rmsprop(s, c, p, g, s0, s1, s2);
    case Optimizer::Adagrad: return rules::adagrad(s, c, p, g, s0);
  }
  return p;
}

}  // namespace pyfit
