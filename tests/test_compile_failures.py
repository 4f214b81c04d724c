"""A compiled step whose trace fails leaves everything as it was.

The first call of a compiled step traces it: it runs the step eagerly while recording.
Whatever stops that call (`TraceError` for reading a value, a user's exception after
``backward()``, Ctrl-C halfway through the optimiser), every parameter, gradient,
optimiser buffer and module must hold what it held before, the same arrays bit for
bit, and the exception must reach the caller as it was raised.
"""

from __future__ import annotations

import numpy as np
import pytest
from tinygrad_ee.models import SequenceClassifier

import tinygrad_ee as tg
from tinygrad_ee import nn, optim


class Mistake(Exception):
    """A user's own exception."""


class InterruptedAdam(optim.Adam):
    """Adam that is interrupted (Ctrl-C) while updating its third parameter, after two
    parameters, their moments and step counts are updated."""

    def _decay(self, p, lr, weight_decay):
        self.decayed += 1
        if self.decayed == 3:
            raise KeyboardInterrupt
        super()._decay(p, lr, weight_decay)


def setup(optimizer: str = "sgd"):
    """A model with trained values, gradients from an eager step, and optimiser state."""
    nn.seed(0, "cpu")
    model = SequenceClassifier("lstm", 3, 4, hidden_size=6, head_sizes=(5,), dtype="float64")
    if optimizer == "sgd":
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    else:
        opt = InterruptedAdam(model.parameters(), lr=0.01, weight_decay=0.1)
        opt.decayed = 3  # only the traced call is interrupted
    rng = np.random.default_rng(0)
    x = tg.Tensor(rng.normal(size=(5, 7, 3)))
    y = tg.Tensor(rng.integers(0, 4, 5))
    opt.zero_grad()
    model.loss(x, y).backward()
    opt.step()  # trained values and optimiser state
    model.loss(x, y).backward()  # gradients the failing step will overwrite
    return model, opt, x, y


def snapshot(model: nn.Module, opt: optim.Optimizer) -> list:
    """Every tensor the step may touch: (tensor, its array, its .grad, its grad's array,
    a copy of its values)."""
    tensors = list(model.parameters())
    tensors += [t for values in opt._state_lists().values() for t in values]
    tensors += [p.grad for p in model.parameters() if p.grad is not None]
    return [(t, t.data, t.grad, t.data.copy()) for t in tensors]


def assert_unchanged(model: nn.Module, opt: optim.Optimizer, before: list, saved: dict) -> None:
    for t, array, grad, values in before:
        assert t.data is array  # the same array, not a copy and not a stand-in
        assert t.grad is grad
        assert t.data.tobytes() == values.tobytes()
    after = model.state_dict()  # no stand-in left behind: state_dict() works
    assert all(after[name].tobytes() == saved[name].tobytes() for name in saved)
    eager = model.parameters()[0] * 2.0  # and eager ops do
    assert isinstance(eager.data, np.ndarray)


def fails(step, model, opt, x, y, error):
    """Call the compiled ``step``, which must raise ``error``; nothing may change."""
    before, saved = snapshot(model, opt), model.state_dict()
    saved_opt = opt.state_dict()
    compiled = tg.compile(step)
    with pytest.raises(error) as raised:
        compiled(x, y)
    assert_unchanged(model, opt, before, saved)
    for name, value in opt.state_dict().items():
        assert np.array_equal(value, saved_opt[name])
    assert compiled.traces == 0
    return raised


def training_step(model, opt, then):
    """A whole training step that calls ``then(loss)`` once every tensor is written."""

    def step(x, y):
        opt.zero_grad()
        loss = model.loss(x, y)
        loss.backward()
        opt.step()
        then(loss)
        return loss

    return step


def test_item_inside_the_step_changes_nothing():
    model, opt, x, y = setup()
    step = training_step(model, opt, lambda loss: loss.item())  # a value read in Python
    raised = fails(step, model, opt, x, y, tg.TraceError)
    assert "inside a compiled step, at" in str(raised.value)
    assert "loss.item()" in str(raised.value)  # the user's line


def test_bool_inside_the_step_changes_nothing():
    model, opt, x, y = setup()
    step = training_step(model, opt, lambda loss: bool(loss > 1.0))  # a branch on a value
    raised = fails(step, model, opt, x, y, tg.TraceError)
    assert "inside a compiled step, at" in str(raised.value)
    assert "bool(loss > 1.0)" in str(raised.value)


def test_a_users_exception_after_backward_reaches_them_unchanged():
    model, opt, x, y = setup()
    mistake = Mistake("the user's own")

    def then(loss):
        raise mistake

    raised = fails(training_step(model, opt, then), model, opt, x, y, Mistake)
    assert raised.value is mistake  # the very object, not wrapped
    assert raised.traceback[-1].name == "then"  # raised where the user raised it


def test_ctrl_c_halfway_through_the_optimiser_changes_nothing():
    model, opt, x, y = setup("adam")
    opt.decayed = 0  # the traced call is interrupted at its third parameter
    fails(training_step(model, opt, lambda loss: None), model, opt, x, y, KeyboardInterrupt)
    assert opt.decayed == 3


def test_after_a_failed_trace_the_step_trains_as_eager():
    """The failed call lost nothing: the same step, traced again, trains exactly as an
    eager run from the same start."""
    model, opt, x, y = setup()
    eager_model, eager_opt, _, _ = setup()
    fail = [True]

    def then(loss):
        if fail[0]:
            raise Mistake

    compiled = tg.compile(training_step(model, opt, then), stack_products=False)  # sums in order
    with pytest.raises(Mistake):
        compiled(x, y)
    fail[0] = False
    eager = training_step(eager_model, eager_opt, then)
    for _ in range(3):
        assert compiled(x, y).item() == eager(x, y).item()
    for a, b in zip(model.parameters(), eager_model.parameters()):
        assert a.data.tobytes() == b.data.tobytes()
    assert compiled.traces == 1
