"""The reference's optimizer updates: torch.optim's single-tensor rules, one param at a time.

Each rule updates one param and its state tensors in place, with the semantics and
the order of operations of torch 2.13's single-tensor implementation
(``torch/optim/{sgd,adam,rmsprop,adagrad}.py``). ``s`` maps the names of
``_settings.SETTING_NAMES`` to their values; ``t`` is the step's number (1-based,
a float as torch's ``_get_value`` gives it). ``state`` holds the param's tensors in
``_settings.state_names`` order.
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Sequence

import torch
from torch import Tensor

from . import _settings


def sgd(param: Tensor, grad: Tensor, state: Sequence[Tensor], lr: float, s: Mapping[str, float],
        t: float) -> None:
    """torch.optim.SGD; on step 1 the momentum buffer takes the step's direction (torch's 'buffer is None')."""
    sgd_step(param, grad, state[0] if state else None, t == 1, lr, s["momentum"], s["dampening"],
             bool(s["nesterov"]), s["weight_decay"], bool(s["maximize"]))


def sgd_step(param: Tensor, grad: Tensor, buf, first_step: bool, lr: float, momentum: float,
             dampening: float, nesterov: bool, weight_decay: float, maximize: bool) -> None:
    """One torch.optim.SGD step of one param; ``buf`` is its momentum buffer (None without momentum)."""
    d_p = -grad if maximize else grad
    if weight_decay != 0:
        d_p = d_p.add(param, alpha=weight_decay)
    if momentum != 0:
        if first_step:
            buf.copy_(d_p)
        else:
            buf.mul_(momentum).add_(d_p, alpha=1 - dampening)
        d_p = d_p.add(buf, alpha=momentum) if nesterov else buf
    param.add_(d_p, alpha=-lr)


def adam(param: Tensor, grad: Tensor, state: Sequence[Tensor], lr: float, s: Mapping[str, float],
         t: float) -> None:
    """torch.optim.Adam, and AdamW as Adam with decoupled weight decay."""
    exp_avg, exp_avg_sq = state[0], state[1]
    g = -grad if s["maximize"] else grad
    if s["weight_decay"] != 0:
        if s["decoupled_weight_decay"]:
            param.mul_(1 - lr * s["weight_decay"])
        else:
            g = g.add(param, alpha=s["weight_decay"])
    exp_avg.lerp_(g, 1 - s["beta1"])
    exp_avg_sq.mul_(s["beta2"]).addcmul_(g, g, value=1 - s["beta2"])
    bias_correction1 = 1 - s["beta1"] ** t
    bias_correction2 = 1 - s["beta2"] ** t
    step_size = lr / bias_correction1
    bias_correction2_sqrt = bias_correction2 ** 0.5
    if s["amsgrad"]:
        max_exp_avg_sq = state[2]
        torch.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        denom = (max_exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(s["eps"])
    else:
        denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(s["eps"])
    param.addcdiv_(exp_avg, denom, value=-step_size)


def rmsprop(param: Tensor, grad: Tensor, state: Sequence[Tensor], lr: float, s: Mapping[str, float],
            t: float) -> None:
    """torch.optim.RMSprop; state is [square_avg] + [momentum_buffer] + [grad_avg] as configured."""
    tensors = dict(zip(_settings.state_names(_settings.RMSPROP, _vector(s)), state))
    g = -grad if s["maximize"] else grad
    if s["weight_decay"] != 0:
        g = g.add(param, alpha=s["weight_decay"])
    square_avg = tensors["square_avg"]
    square_avg.mul_(s["alpha"]).addcmul_(g, g, value=1 - s["alpha"])
    if s["centered"]:
        grad_avg = tensors["grad_avg"]
        grad_avg.lerp_(g, 1 - s["alpha"])
        avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
    else:
        avg = square_avg.sqrt()
    avg = avg.add_(s["eps"])
    if s["momentum"] > 0:
        buf = tensors["momentum_buffer"]
        buf.mul_(s["momentum"]).addcdiv_(g, avg)
        param.add_(buf, alpha=-lr)
    else:
        param.addcdiv_(g, avg, value=-lr)


def adagrad(param: Tensor, grad: Tensor, state: Sequence[Tensor], lr: float, s: Mapping[str, float],
            t: float) -> None:
    """torch.optim.Adagrad; state is [sum], which starts at initial_accumulator_value."""
    (state_sum,) = state
    g = -grad if s["maximize"] else grad
    if s["weight_decay"] != 0:
        g = g.add(param, alpha=s["weight_decay"])
    clr = lr / (1 + (t - 1) * s["lr_decay"])
    state_sum.addcmul_(g, g, value=1)
    std = state_sum.sqrt().add_(s["eps"])
    param.addcdiv_(g, std, value=-clr)


def _vector(s: Mapping[str, float]):
    return [s[name] for name in _settings.SETTING_NAMES]


UPDATES: Dict[int, Callable[..., None]] = {
    _settings.SGD: sgd,
    _settings.ADAM: adam,
    _settings.RMSPROP: rmsprop,
    _settings.ADAGRAD: adagrad,
}
