"""pyfit's SGD against torch.optim.SGD: same parameters, same state_dict, many steps."""

import copy
import itertools
import re

import pytest
import torch

import pyfit

CASES = [
    dict(momentum=m, dampening=d, nesterov=n, weight_decay=wd, maximize=mx)
    for m, d, n, wd, mx in itertools.product([0.0, 0.9], [0.0, 0.5], [False, True], [0.0, 0.01], [False, True])
    if not (n and (m == 0 or d != 0))
]


@pytest.mark.parametrize("kw", CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_sgd_equals_torch_sgd(kw):
    g = torch.Generator().manual_seed(7)
    shapes = [(4, 3), (3,), (1,)]
    init = [torch.randn(s, generator=g) for s in shapes]
    mine = [torch.nn.Parameter(t.clone()) for t in init]
    theirs = [torch.nn.Parameter(t.clone()) for t in init]
    a = pyfit.SGD(mine, lr=0.05, **kw)
    b = torch.optim.SGD(theirs, lr=0.05, **kw)
    for step in range(25):
        grads = [torch.randn(s, generator=g) for s in shapes]
        for i, (p, q) in enumerate(zip(mine, theirs)):
            none = step in (0, 3) and i == 1  # also a first step without a gradient
            p.grad = None if none else grads[i].clone()
            q.grad = None if none else grads[i].clone()
        a.step()
        b.step()
    for p, q in zip(mine, theirs):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for key in sa["state"]:
        assert sa["state"][key].keys() == sb["state"][key].keys()
        for name in sa["state"][key]:
            torch.testing.assert_close(sa["state"][key][name], sb["state"][key][name], rtol=1e-6, atol=1e-6)


def test_sgd_state_dict_round_trips_with_torch():
    p = torch.nn.Parameter(torch.ones(3))
    torch_opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = torch.ones(3)
    torch_opt.step()
    q = torch.nn.Parameter(p.detach().clone())
    mine = pyfit.SGD([q], lr=0.1, momentum=0.9)
    # a copy, as after torch.save/torch.load: state_dict() shares the live buffers
    mine.load_state_dict(copy.deepcopy(torch_opt.state_dict()))
    p.grad, q.grad = torch.full((3,), 0.5), torch.full((3,), 0.5)
    torch_opt.step()
    mine.step()
    torch.testing.assert_close(p, q)


def test_sgd_param_groups_each_get_their_settings():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = pyfit.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 1.0, "momentum": 0.5}], lr=0.5)
    a.grad, b.grad = torch.ones(2), torch.ones(2)
    opt.step()
    torch.testing.assert_close(a.detach(), torch.full((2,), 0.9))
    torch.testing.assert_close(b.detach(), torch.zeros(2))


@pytest.mark.parametrize("kw, message", [
    (dict(lr=-1.0), "lr must be a number >= 0, got -1.0"),
    (dict(lr=torch.tensor([0.1, 0.2])), "lr must be a number or a 1-element tensor, got a tensor of shape (2,)"),
    (dict(lr=0.1, momentum=-0.1), "momentum must be a number >= 0, got -0.1"),
    (dict(lr=0.1, nesterov=True), "nesterov=True needs momentum > 0"),
    (dict(lr=0.1, nesterov=True, momentum=0.9, dampening=0.1), "nesterov=True needs dampening=0"),
    (dict(lr=0.1, weight_decay=-1), "weight_decay must be"),
])
def test_settings_torch_refuses_are_refused_with_a_clear_message(kw, message):
    p = torch.nn.Parameter(torch.ones(1))
    with pytest.raises(ValueError):  # torch refuses each of these too
        torch.optim.SGD([p], **kw)
    with pytest.raises(pyfit.InputError, match=re.escape(message)):
        pyfit.build_optimizer("sgd", [p], **kw)


def test_torch_optimizers_get_the_same_checks():
    with pytest.raises(pyfit.InputError, match="lr must be"):
        pyfit.build_optimizer("adam", [torch.nn.Parameter(torch.ones(1))], lr=-0.1)
