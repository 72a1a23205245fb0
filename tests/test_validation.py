"""pyfit.validation: the checks every entry point shares, refusing before anything changes."""

import numpy as np
import pytest
import torch

import pyfit


def _line(n=20, dtype=torch.float32):
    x = torch.linspace(0, 1, n, dtype=dtype)
    return x, 3 * x + 0.8


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(before, model):
    return all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_any_numpy_integer_is_a_seed_and_out_of_range_seeds_are_refused(backend):
    x, y = _line()
    plain = pyfit.fit("linear", x, y, epochs=5, batch_size=4, shuffle=True, seed=3)
    for seed in (np.int64(3), np.int32(3), np.uint8(3)):
        numpy_seeded = pyfit.fit("linear", x, y, epochs=5, batch_size=4, shuffle=True, seed=seed)
        assert torch.equal(numpy_seeded.model.weight, plain.model.weight)
        assert numpy_seeded.config["seed"] == 3 and type(numpy_seeded.config["seed"]) is int
    for seed in (2**70, -(2**63) - 1):
        with pytest.raises(pyfit.InputError, match=r"seed must be an integer from -2\*\*63 to 2\*\*64 - 1"):
            pyfit.fit("linear", x, y, epochs=2, seed=seed)
    with pytest.raises(pyfit.InputError, match="seed must be an integer or None, got float 1.5"):
        pyfit.fit("linear", x, y, epochs=2, seed=1.5)
    from pyfit.validation import check_seed

    assert check_seed(2**64 - 1) == 2**64 - 1 and check_seed(None) is None


class MustNotStart(pyfit.Callback):
    """Fails a test whose fit should have been refused before its first epoch."""

    def on_fit_start(self, state):
        raise AssertionError("the fit started")


def test_absurd_epochs_are_refused_up_front(backend):
    x, y = _line()
    model = pyfit.Linear(1)
    before = _state(model)
    for epochs in (10**20, 10**7 + 1):  # the history alone would need gigabytes
        with pytest.raises(pyfit.InputError, match="epochs must be at most 10,000,000"):
            pyfit.fit(model, x, y, epochs=epochs, callbacks=[MustNotStart()])
    assert _same(before, model)
    assert pyfit.fit("linear", x, y, epochs=np.int64(3)).epochs == 3


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_refused_alike_on_both_backends(backend, dtype):
    x, y = _line()
    with pytest.raises(pyfit.InputError, match=rf"X has dtype {dtype}; pyfit fits in float32 or float64: "
                                               r"pass X\.float\(\)"):
        pyfit.fit("linear", x.to(dtype), y.to(dtype), epochs=2)
    model = pyfit.Linear(1).to(dtype)
    before = _state(model)
    with pytest.raises(pyfit.InputError, match=rf"the model's parameters are {dtype}.*model\.float\(\)"):
        pyfit.fit(model, x, y, epochs=2)
    assert _same(before, model)
    # the fix the message names works
    assert pyfit.fit("linear", x.to(dtype).float(), y.to(dtype).float(), epochs=2).stop_reason == "completed"


def test_complex_data_is_refused():
    x, y = _line()
    for X in (x.to(torch.complex64), x.numpy().astype(np.complex128)):
        with pytest.raises(TypeError, match="X must be real-valued"):
            pyfit.fit("linear", X, y, epochs=2)


@pytest.mark.parametrize("hidden", [[0], [4, 0], [2.5], [-1]])
def test_an_mlp_layer_needs_a_width_of_at_least_one(hidden):
    x, y = _line()
    with pytest.raises(pyfit.InputError, match=r"hidden\[\d\] must be an integer >= 1"):
        pyfit.fit("mlp", x, y, epochs=2, model_kwargs={"hidden": hidden})
    with pytest.raises(pyfit.InputError, match="hidden"):
        pyfit.MLP(1, hidden=hidden)
    assert pyfit.MLP(1, hidden=[3.0]).config["hidden"] == [3]
