"""The fused SGD update against the reference and torch.optim.SGD."""

import pytest
import torch
from hypothesis import given, settings, strategies as st

import pyfit.ops
from pyfit.ops import _extension, _reference

ops, _reason = _extension.load()
pytestmark = pytest.mark.skipif(ops is None, reason=f"compiled pyfit ops not built: {_reason}")

TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-12)}

hyper = st.fixed_dictionaries({
    "lr": st.sampled_from([0.1, 0.01]),
    "momentum": st.sampled_from([0.0, 0.9]),
    "dampening": st.sampled_from([0.0, 0.3]),
    "nesterov": st.booleans(),
    "weight_decay": st.sampled_from([0.0, 0.05]),
    "maximize": st.booleans(),
})


@st.composite
def tensor_sets(draw):
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    sizes = draw(st.lists(st.sampled_from([0, 1, 7, 8, 33, 1000, 40001]), min_size=1, max_size=5))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    params = []
    for n in sizes:
        p = torch.randn(n, 2, generator=gen, dtype=dtype)
        params.append(p.t() if draw(st.booleans()) else p)  # non-contiguous views too
    return params, gen


@settings(max_examples=30, deadline=None)
@given(tensor_sets(), hyper, st.booleans())
def test_matches_reference(tensors, h, zero_grads):
    params, gen = tensors
    grads = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
    bufs = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params] if h["momentum"] else []
    first = [bool(i % 2) for i in range(len(params))]
    mine = ([p.clone() for p in params], [g.clone() for g in grads], [b.clone() for b in bufs])
    ref = ([p.clone() for p in params], [g.clone() for g in grads], [b.clone() for b in bufs])
    args = (first, h["lr"], h["momentum"], h["dampening"], h["nesterov"], h["weight_decay"],
            h["maximize"], zero_grads)
    ops.sgd_update_(*mine, *args)
    _reference.sgd_update_(*ref, *args)
    for a, b in zip(sum(mine, []), sum(ref, [])):
        torch.testing.assert_close(a, b, **TOL[a.dtype])


@settings(max_examples=20, deadline=None)
@given(tensor_sets(), hyper)
def test_matches_torch_optim_over_steps(tensors, h):
    params, gen = tensors
    if h["nesterov"] and (h["momentum"] == 0 or h["dampening"] != 0):
        h = dict(h, nesterov=False)  # torch.optim.SGD rejects these combinations
    ours = [p.clone() for p in params]
    theirs = [p.clone().requires_grad_() for p in params]
    opt = torch.optim.SGD(theirs, **h)
    bufs = [None] * len(ours)
    previous = pyfit.ops._backend._selected
    pyfit.ops._backend._selected = (ops, "cpp", None)
    try:
        for step in range(4):
            grads = [None if (i + step) % 3 == 0 else torch.randn(p.shape, generator=gen, dtype=p.dtype)
                     for i, p in enumerate(ours)]
            for t, g in zip(theirs, grads):
                t.grad = None if g is None else g.clone()
            opt.step()
            bufs = pyfit.ops.sgd_update_(ours, grads, bufs, **h)
    finally:
        pyfit.ops._backend._selected = previous
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b.detach(), **TOL[a.dtype])


def test_non_contiguous_param_is_updated_in_place():
    base = torch.ones(4, 6)
    view = base[:, ::2]
    grad = torch.full(view.shape, 2.0)
    ops.sgd_update_([view], [grad], [], [False], 0.5, 0.0, 0.0, False, 0.0, False, True)
    assert torch.equal(base[:, ::2], torch.zeros(4, 3)) and torch.equal(base[:, 1::2], torch.ones(4, 3))
    assert torch.equal(grad, torch.zeros(4, 3))


def test_opcheck():
    params = [torch.randn(5), torch.randn(3, 2)]
    grads = [torch.randn(5), torch.randn(3, 2)]
    bufs = [torch.randn(5), torch.randn(3, 2)]
    torch.library.opcheck(torch.ops.pyfit.sgd_update_.default,
                          (params, grads, bufs, [True, False], 0.1, 0.9, 0.1, True, 0.01, False, True))
    torch.library.opcheck(torch.ops.pyfit.sgd_update_.default,
                          (params, grads, [], [False, False], 0.1, 0.0, 0.0, False, 0.0, True, False))


def test_deterministic():
    p = torch.randn(100_001)
    outs = []
    for _ in range(2):
        q = p.clone()
        ops.sgd_update_([q], [p * 0.5], [torch.zeros_like(p)], [False], 0.1, 0.9, 0.0, True, 0.1, False, False)
        outs.append(q)
    assert torch.equal(*outs)


def test_errors_name_expected_and_actual():
    with pytest.raises(RuntimeError, match="expected 2 grads, got 1"):
        ops.sgd_update_([torch.ones(2), torch.ones(2)], [torch.ones(2)], [], [False, False],
                        0.1, 0.0, 0.0, False, 0.0, False, False)
    with pytest.raises(RuntimeError, match=r"grads\[0\] must have params\[0\]'s shape \[2\], got \[3\]"):
        ops.sgd_update_([torch.ones(2)], [torch.ones(3)], [], [False], 0.1, 0.0, 0.0, False, 0.0, False, False)
    with pytest.raises(RuntimeError, match="expected 1 buffers, got 0"):
        ops.sgd_update_([torch.ones(2)], [torch.ones(2)], [], [False], 0.1, 0.9, 0.0, False, 0.0, False, False)
    with pytest.raises(RuntimeError, match="float32 or float64, got Long"):
        ops.sgd_update_([torch.ones(2, dtype=torch.long)], [torch.ones(2, dtype=torch.long)], [],
                        [False], 0.1, 0.0, 0.0, False, 0.0, False, False)
