"""The training recipe's parts in compiled steps: weight decay, a learning-rate schedule
and input standardisation replay exactly what the eager step computes, and a run
resumed from state dicts (model, optimiser, schedule) continues bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from tinygrad_ee.models import SequenceClassifier

import tinygrad_ee as tg
from tinygrad_ee import nn, optim

# Each recipe switches on some parts; "all" is the modern recipe in full.
RECIPES = {
    "adam-decay": {"optimizer": "adam", "weight_decay": 0.1},
    "sgd-decay": {"optimizer": "sgd", "weight_decay": 0.05},
    "schedule": {"optimizer": "sgd", "schedule": True},
    "standardize": {"optimizer": "sgd", "standardize": True},
    "all": {"optimizer": "adam", "weight_decay": 0.1, "schedule": True, "standardize": True},
}


def data(steps: int, dtype: str, seed: int = 1) -> list[tuple[tg.Tensor, tg.Tensor]]:
    rng = np.random.default_rng(seed)
    return [
        (
            tg.Tensor(rng.normal(3.0, 2.0, (5, 6, 3)).astype(dtype)),
            tg.Tensor(rng.integers(0, 4, 5)),
        )
        for _ in range(steps)
    ]


class Run:
    """A model, optimiser, optional schedule and a (compiled) training step."""

    def __init__(
        self,
        dtype: str,
        compiled: bool,
        optimizer: str = "sgd",
        weight_decay: float = 0.0,
        schedule: bool = False,
        standardize: bool = False,
        seed: int = 0,
        cell: str = "lstm",
    ) -> None:
        nn.seed(seed)
        self.model = SequenceClassifier(
            cell, 3, 4, hidden_size=6, head_sizes=(5,), dtype=dtype, standardize=standardize,
            init="orthogonal",
        )  # fmt: skip
        if standardize:
            x_train = np.concatenate([x.numpy() for x, _ in data(4, dtype, seed=seed + 7)])
            self.model.fit_standardization(x_train)
        parameters = self.model.parameters()
        if optimizer == "adam":
            self.optimizer = optim.Adam(parameters, lr=0.01, weight_decay=weight_decay)
        else:
            self.optimizer = optim.SGD(parameters, 0.1, momentum=0.85, weight_decay=weight_decay)
        self.schedule = optim.CosineDecay(self.optimizer, total=10, warmup=3) if schedule else None
        # stack_products off: stacking reorders a sum (test_compile checks it to 1e-12)
        self.step = tg.compile(self._step, stack_products=False) if compiled else self._step
        self.learning_rates: list[float] = []

    def _step(self, x: tg.Tensor, y: tg.Tensor) -> tg.Tensor:
        self.optimizer.zero_grad()
        loss = self.model.loss(x, y)
        loss.backward()
        optim.clip_grad_norm(self.model.parameters(), 1.0)
        self.optimizer.step()
        return loss

    def train(self, batches) -> list[float]:
        losses = []
        for x, y in batches:
            self.learning_rates.append(self.optimizer.lr)
            losses.append(self.step(x, y).item())
            if self.schedule is not None:
                self.schedule.step()
        return losses

    def state(self) -> dict[str, dict]:
        schedule = self.schedule.state_dict() if self.schedule is not None else {}
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": schedule,
        }


def assert_same_state(got: dict, expected: dict) -> None:
    for part, values in expected.items():
        assert got[part].keys() == values.keys(), part
        for key, value in values.items():
            np.testing.assert_array_equal(got[part][key], value, err_msg=f"{part} {key}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_compiled_recipe_equals_eager_bit_for_bit(recipe, dtype):
    batches = data(12, dtype)
    eager = Run(dtype, compiled=False, **RECIPES[recipe])
    compiled = Run(dtype, compiled=True, **RECIPES[recipe])
    assert compiled.train(batches) == eager.train(batches)
    assert_same_state(compiled.state(), eager.state())
    assert compiled.step.traces == 1  # one program, its lr read afresh at every call


def test_a_schedule_changes_lr_every_step_without_retracing():
    run = Run("float64", compiled=True, schedule=True)
    run.train(data(10, "float64"))
    assert len(set(run.learning_rates)) == 10  # a new lr at every call
    assert run.step.traces == 1
    # lr reached the program: the same steps with lr frozen at its first value differ
    frozen = Run("float64", compiled=True)
    frozen.optimizer.lr = run.learning_rates[0]
    frozen.train(data(10, "float64"))
    assert not np.array_equal(
        frozen.state()["model"]["head.1.bias"], run.state()["model"]["head.1.bias"]
    )


def test_switching_weight_decay_on_retraces():
    """Off, the step has no decay at all; on, it must: the program is traced again."""
    batches = data(6, "float64")
    eager, compiled = Run("float64", False, "adam"), Run("float64", True, "adam")
    eager.train(batches[:3])
    compiled.train(batches[:3])
    for run in (eager, compiled):
        run.optimizer.weight_decay = 0.2
    eager.train(batches[3:])
    compiled.train(batches[3:])
    assert compiled.step.traces == 2
    assert_same_state(compiled.state(), eager.state())


def test_fitting_the_statistics_again_reaches_a_compiled_step():
    batches = data(4, "float64")
    eager = Run("float64", False, standardize=True)
    compiled = Run("float64", True, standardize=True)
    compiled.train(batches[:2])
    eager.train(batches[:2])
    x_new = np.random.default_rng(9).normal(-5.0, 0.5, (7, 6, 3))
    for run in (eager, compiled):
        run.model.fit_standardization(x_new)  # new buffer arrays: the old program is stale
    assert compiled.train(batches[2:]) == eager.train(batches[2:])
    assert_same_state(compiled.state(), eager.state())


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_resuming_model_optimiser_and_schedule_continues_bit_for_bit(compiled, tmp_path):
    recipe = RECIPES["all"]
    batches = data(10, "float32")
    uninterrupted = Run("float32", compiled, **recipe)
    uninterrupted.train(batches)

    first = Run("float32", compiled, **recipe)
    first.train(batches[:4])
    for part, state in first.state().items():
        np.savez(tmp_path / f"{part}.npz", **state)

    # another start, other statistics and another base lr: everything comes from the files
    resumed = Run("float32", compiled, **recipe, seed=3)
    resumed.optimizer.lr = 0.5
    for part, target in (
        ("model", resumed.model),
        ("optimizer", resumed.optimizer),
        ("schedule", resumed.schedule),
    ):
        with np.load(tmp_path / f"{part}.npz") as saved:
            target.load_state_dict(dict(saved))
    resumed.train(batches[4:])
    assert resumed.learning_rates == uninterrupted.learning_rates[4:]
    assert_same_state(resumed.state(), uninterrupted.state())
