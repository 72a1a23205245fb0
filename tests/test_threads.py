"""A fit runs on the CPU threads its work pays for, or on ``threads=N``, and leaves torch's setting as it was."""

import os
import signal

import pytest
import torch

import pyfit
from pyfit.threads import WORK_PER_THREAD, threads_for


@pytest.fixture
def two_threads():
    """torch set to 2 threads for the test (more than a small fit needs), put back afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)


class ThreadRecorder(pyfit.Callback):
    def __init__(self):
        self.seen = []

    def on_epoch_end(self, state):
        self.seen.append(torch.get_num_threads())


class Raiser(pyfit.Callback):
    def __init__(self, error):
        self.error = error

    def on_epoch_end(self, state):
        raise self.error


def small_data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(50, 3, generator=g)
    return X, X @ torch.tensor([1.0, -2.0, 0.5]) + 0.3


def test_threads_for_grows_with_the_work_and_stays_within_what_is_available():
    assert threads_for(0, 8) == 1
    assert threads_for(WORK_PER_THREAD - 1, 8) == 1
    assert threads_for(3 * WORK_PER_THREAD, 8) == 3
    assert threads_for(1e15, 8) == 8
    assert threads_for(1e15, 1) == 1


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])  # the fused and the autograd path
def test_a_small_fit_runs_on_one_thread_and_restores_the_setting(two_threads, optimizer):
    X, y = small_data()
    recorder = ThreadRecorder()
    pyfit.fit("linear", X, y, optimizer=optimizer, lr=0.01, epochs=3, callbacks=[recorder])
    assert recorder.seen == [1, 1, 1]
    assert torch.get_num_threads() == two_threads


def test_a_large_fit_keeps_the_threads_it_can_use(two_threads):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200_000, 16, generator=g)  # 4 * 200,000 * 16 FLOPs per step: work for 3 threads
    y = X.sum(1)
    recorder = ThreadRecorder()
    pyfit.fit("linear", X, y, lr=0.01, epochs=2, callbacks=[recorder])
    assert recorder.seen == [2, 2]
    assert torch.get_num_threads() == two_threads


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_threads_overrides_the_choice(two_threads, optimizer):
    X, y = small_data()
    recorder = ThreadRecorder()
    pyfit.fit("linear", X, y, optimizer=optimizer, lr=0.01, epochs=2, threads=3, callbacks=[recorder])
    assert recorder.seen == [3, 3]
    assert torch.get_num_threads() == two_threads


@pytest.mark.parametrize("error", [RuntimeError("callback failed"), KeyboardInterrupt()])
def test_the_setting_comes_back_when_the_fit_raises(two_threads, error):
    X, y = small_data()
    with pytest.raises(type(error)):
        pyfit.fit("linear", X, y, optimizer="adam", lr=0.01, epochs=5, threads=1, callbacks=[Raiser(error)])
    assert torch.get_num_threads() == two_threads


def test_the_setting_comes_back_after_ctrl_c(two_threads):
    class Interrupter(pyfit.Callback):
        def on_epoch_end(self, state):
            if state.epoch == 2:
                os.kill(os.getpid(), signal.SIGINT)

    X, y = small_data()
    result = pyfit.fit("linear", X, y, optimizer="adam", lr=0.01, epochs=100, threads=1,
                       callbacks=[Interrupter()])
    assert result.stop_reason == "interrupted" and result.epochs == 2
    assert torch.get_num_threads() == two_threads


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_a_bad_thread_count_is_refused_before_anything_changes(two_threads, bad):
    X, y = small_data()
    model = pyfit.Linear(3)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(pyfit.InputError, match=f"threads must be an integer >= 1, got {bad!r}"):
        pyfit.fit(model, X, y, lr=0.01, epochs=2, threads=bad)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert torch.get_num_threads() == two_threads


@pytest.mark.parametrize("settings", [
    dict(),  # full batch
    dict(batch_size=3000, shuffle=True, momentum=0.9),
])
def test_fused_results_do_not_depend_on_the_thread_count(backend, settings):
    # enough rows for several blocks of the fixed-block reductions
    g = torch.Generator().manual_seed(1)
    X = torch.randn(20_000, 8, generator=g)
    y = X @ torch.randn(8, generator=g) + 0.1 * torch.randn(20_000, generator=g)
    fits = [pyfit.fit("linear", X, y, lr=0.05, epochs=5, seed=0, threads=n, **settings) for n in (1, 2)]
    assert fits[0].backend.endswith("fused-linear")
    assert fits[0].history == fits[1].history
    for a, b in zip(fits[0].model.parameters(), fits[1].model.parameters()):
        assert torch.equal(a, b)
