"""Optimisers (SGD with momentum, Adam), weight decay, learning-rate schedules and
gradient-norm clipping.

An optimiser updates each parameter's ``data`` from its ``.grad`` after
``loss.backward()``. The updates are plain array arithmetic on the backend (no
graph is recorded). New arrays are always written, never modified in place:
a gradient array may be shared between tensors.

Everything an update reads is an array, so a compiled step (`tinygrad_ee.compile`)
replays it: the per-parameter state (velocities, moments, Adam's step counts) lives in
tensors, the hyperparameters are read through `host_scalar` at every call (a schedule
may change ``lr`` between steps), and clipping computes its scale as an array.

    opt = SGD(model.parameters(), lr=0.1, momentum=0.85)
    for x, y in batches:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

Weight decay is decoupled in both optimisers (Loshchilov and Hutter, "Decoupled
weight decay regularization", 2019; AdamW): each step first shrinks every parameter it
updates, p <- p - lr * weight_decay * p, and then applies the gradient update, which
never sees the decay. For SGD without momentum that is L2 regularisation with the
penalty weight_decay / 2 * ||p||^2 (the same update, up to rounding); with momentum
the decay is not accumulated in the velocity, and in Adam it is not divided by the
second moment (which would decay the weights with the smallest gradients the most).
Every parameter the optimiser holds is decayed, biases too; to spare some, give them to
a second optimiser without decay.
``weight_decay=0`` (the default) runs no decay at all: the update is bit for bit the
one without it.

A schedule (`Constant`, `CosineDecay`, `StepDecay`, each with an optional linear
warm-up) sets ``optimizer.lr`` from a count of its ``step()`` calls, per batch or per
epoch, between calls of a compiled step (which reads ``lr`` at every call):

    schedule = CosineDecay(opt, total=epochs * batches, warmup=100)
    for x, y in batches:
        train_step(x, y)
        schedule.step()

``state_dict()`` is a flat dict of Python numbers and NumPy arrays (it can be
written with ``numpy.savez``), and ``load_state_dict`` restores it exactly; the same
holds for schedules, so that a resumed run continues bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np  # host copies for state dicts only, never tensor data

from .compiler import hooks
from .compiler.hooks import guard, host_scalar
from .nn import _host_array, _key_problems
from .tensor import Tensor

Array = Any  # an array of the parameters' backend


class Optimizer:
    """What every optimiser shares: its parameter list, zeroing gradients, and saving.

    Subclasses name their hyperparameters in ``HYPERPARAMETERS`` (float
    attributes, saved as ``"lr"``, ...), keep per-parameter state in lists indexed
    like ``params`` (registered in ``_state_lists``, saved as ``"velocity.0"``,
    ...), and define ``step()``.
    """

    HYPERPARAMETERS: tuple[str, ...] = ()
    weight_decay: float = 0.0

    def __init__(self, params: Iterable[Tensor]) -> None:
        self.params: list[Tensor] = list(params)
        if not self.params:
            raise ValueError("optimiser got no parameters")
        seen = set()  # ids: Tensor's == is elementwise
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor):
                raise TypeError(f"parameter {i} is a {type(p).__name__}, not a Tensor")
            if id(p) in seen:
                raise ValueError(f"parameter {i} appears twice; it would be updated twice")
            seen.add(id(p))

    def step(self) -> None:
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Forget every parameter's gradient (``.grad = None``)."""
        for p in self.params:
            p.grad = None

    def _state_lists(self) -> dict[str, list[Tensor]]:
        """Per-parameter state by name: lists of tensors, one per parameter (arrays like
        the parameter, or 0-d integer counts)."""
        return {}

    def _zeros(self, dtype: Any = None) -> list[Tensor]:
        """One state tensor per parameter: zeros like it, or 0-d zeros of ``dtype``."""
        if dtype is None:
            return [Tensor._make(p.backend.xp.zeros_like(p.data), p.backend) for p in self.params]
        return [
            Tensor._make(p.backend.xp.zeros((), dtype=p.backend.dtype(dtype)), p.backend)
            for p in self.params
        ]

    def _hyperparameters(self) -> list[Any]:
        """The hyperparameters as numbers a compiled step reads at every call, and its
        guards: the parameter list is the one it was traced with, and weight decay is
        still on (or still off: then the step has no decay at all)."""
        guard(lambda: [id(p) for p in self.params])
        guard(lambda: self.weight_decay != 0)
        return [host_scalar(lambda name=name: getattr(self, name)) for name in self.HYPERPARAMETERS]

    def _decay(self, p: Tensor, lr: Any, weight_decay: Any) -> None:
        """Decoupled weight decay (module docstring): p <- p - lr * weight_decay * p."""
        if self.weight_decay != 0:
            p.data = p.data - (lr * weight_decay) * p.data

    # --- saving and loading -------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters and per-parameter state, as a flat dict of Python numbers
        and NumPy arrays: ``{"lr": 0.1, "velocity.0": array, ...}``."""
        state: dict[str, Any] = {name: float(getattr(self, name)) for name in self.HYPERPARAMETERS}
        for name, values in self._state_lists().items():
            for i, value in enumerate(values):
                state[f"{name}.{i}"] = int(value.item()) if _is_count(value) else value.numpy()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` saved (hyperparameters included).

        Everything is checked before anything is assigned: the keys must match this
        optimiser's exactly, numbers must be finite real scalars (0-d arrays, as
        ``numpy.load`` returns them, are fine), counts non-negative integers, and
        arrays numeric with their parameter's shape, finite once in its dtype.
        Otherwise a ValueError names every offending key and nothing changes.
        """
        lists = self._state_lists()
        # key -> (what it must be, index of its parameter)
        expected = {name: ("number", None) for name in self.HYPERPARAMETERS}
        for name, values in lists.items():
            for i, value in enumerate(values):
                expected[f"{name}.{i}"] = ("count" if _is_count(value) else "array", i)
        problems = _key_problems(expected=expected, given=state)

        loaded = {}
        for key, (kind, i) in expected.items():
            if key not in state:
                continue
            if kind == "number":
                loaded[key], problem = _number(key, state[key])
            elif kind == "count":
                loaded[key], problem = _count(key, state[key])
            else:
                p = self.params[i]
                loaded[key], problem = _host_array(key, state[key], p.shape, p.dtype)
            if problem:
                problems.append(problem)
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: " + "; ".join(problems))

        for name in self.HYPERPARAMETERS:
            setattr(self, name, loaded[name])
        for name, values in lists.items():
            for i, value in enumerate(values):
                value.data = value.backend.asarray(loaded[f"{name}.{i}"], dtype=value.dtype)


def _is_count(value: Tensor) -> bool:
    return value.ndim == 0 and value.backend.kinds.get(value.dtype) == "int"


def _scalar(value: Any) -> np.ndarray | None:
    """A Python number or 0-d array as a 0-d NumPy array of numbers, else None."""
    if isinstance(value, Tensor):
        value = value.numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        return None
    return array if array.shape == () and array.dtype.kind in "iuf" else None


def _number(key: str, value: Any) -> tuple[float | None, str | None]:
    array = _scalar(value)
    if array is None or not math.isfinite(float(array)):
        return None, f"{key!r} must be a finite number, got {value!r}"
    return float(array), None


def _count(key: str, value: Any) -> tuple[int | None, str | None]:
    array = _scalar(value)
    if array is None or array.dtype.kind not in "iu" or int(array) < 0:
        return None, f"{key!r} must be a non-negative integer, got {value!r}"
    return int(array), None


def _check_weight_decay(owner: str, weight_decay: float) -> None:
    if not (0.0 <= weight_decay < math.inf):
        raise ValueError(f"{owner}: weight_decay must be a finite number >= 0, got {weight_decay}")


class SGD(Optimizer):
    """Stochastic gradient descent with (heavy-ball) momentum and decoupled weight
    decay (module docstring).

    For each parameter p with gradient g, with a velocity v that starts at 0:

        p <- p - lr * weight_decay * p      (only if weight_decay != 0)
        v <- momentum * v - lr * g
        p <- p + v

    ``momentum=0`` is plain gradient descent, p <- p - lr * g. Parameters whose
    ``.grad`` is None are skipped (their velocity is kept as it is, and they are not
    decayed).
    """

    HYPERPARAMETERS = ("lr", "momentum", "weight_decay")

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params)
        if not lr > 0:
            raise ValueError(f"SGD: lr must be positive, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"SGD: momentum must lie in [0, 1), got {momentum}")
        _check_weight_decay("SGD", weight_decay)
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.velocity: list[Tensor] = self._zeros()

    def _state_lists(self) -> dict[str, list[Tensor]]:
        return {"velocity": self.velocity}

    def step(self) -> None:
        """Update every parameter that has a gradient."""
        lr, momentum, weight_decay = self._hyperparameters()
        for p, v in zip(self.params, self.velocity):
            if p.grad is None:
                continue
            self._decay(p, lr, weight_decay)
            v.data = momentum * v.data - lr * p.grad.data
            p.data = p.data + v.data


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015) with bias-corrected moment estimates, and decoupled
    weight decay (AdamW, module docstring).

    For each parameter p with gradient g, moments m and v starting at 0, and
    t counting this parameter's updates (starting at 1):

        p <- p - lr * weight_decay * p      (only if weight_decay != 0)
        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g^2
        m_hat = m / (1 - beta1^t)
        v_hat = v / (1 - beta2^t)
        p <- p - lr * m_hat / (sqrt(v_hat) + eps)

    Parameters whose ``.grad`` is None are skipped (not decayed either), and their t
    does not advance (so their bias correction stays right when they join late).
    """

    HYPERPARAMETERS = ("lr", "beta1", "beta2", "eps", "weight_decay")

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params)
        beta1, beta2 = betas
        if not lr > 0:
            raise ValueError(f"Adam: lr must be positive, got {lr}")
        if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
            raise ValueError(f"Adam: betas must lie in [0, 1), got {betas}")
        if not eps > 0:
            raise ValueError(f"Adam: eps must be positive, got {eps}")
        _check_weight_decay("Adam", weight_decay)
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.weight_decay = weight_decay
        self.first_moment: list[Tensor] = self._zeros()  # m
        self.second_moment: list[Tensor] = self._zeros()  # v
        self.steps: list[Tensor] = self._zeros("int64")  # t, on the device: no value read

    def _state_lists(self) -> dict[str, list[Tensor]]:
        return {
            "step": self.steps,
            "first_moment": self.first_moment,
            "second_moment": self.second_moment,
        }

    def step(self) -> None:
        """Update every parameter that has a gradient."""
        lr, beta1, beta2, eps, weight_decay = self._hyperparameters()
        for p, m, v, t in zip(self.params, self.first_moment, self.second_moment, self.steps):
            if p.grad is None:
                continue
            self._decay(p, lr, weight_decay)
            xp, g = p.backend.xp, p.grad.data
            t.data = t.data + 1
            count = xp.astype(t.data, xp.float64)
            m.data = beta1 * m.data + (1 - beta1) * g
            v.data = beta2 * v.data + (1 - beta2) * (g * g)
            m_hat = m.data / xp.astype(1 - beta1**count, p.dtype)
            v_hat = v.data / xp.astype(1 - beta2**count, p.dtype)
            p.data = p.data - lr * m_hat / (xp.sqrt(v_hat) + eps)


# --- learning-rate schedules ------------------------------------------------------------
class Schedule:
    """Sets ``optimizer.lr`` from a count n of ``step()`` calls: lr = ``at(n)``.

    The count is in whatever unit the caller steps it: call ``step()`` after each
    optimiser step for a per-batch schedule, or after each epoch for a per-epoch one,
    always outside a compiled step (a compiled step runs Python only when it traces;
    it reads ``lr`` afresh at every call, so a new value needs no retrace). Building a
    schedule takes the optimiser's current lr as ``base_lr`` and sets lr = at(0).

    With a linear warm-up of W counts (``warmup=W``):

        at(n) = base_lr * (n + 1) / (W + 1)     for n < W
        at(n) = decay(n - W)                     for n >= W, with decay(0) = base_lr

    so the first W updates climb in equal steps below base_lr, and the next one has it.

    Subclasses define ``decay`` and name their settings in ``INTEGERS`` and
    ``NUMBERS``. ``state_dict()`` holds the count and every setting as Python numbers;
    ``load_state_dict`` checks and restores them and sets ``lr = at(count)``, so a
    resumed run continues bit for bit.
    """

    INTEGERS: tuple[str, ...] = ("warmup",)
    NUMBERS: tuple[str, ...] = ("base_lr",)

    def __init__(self, optimizer: Optimizer, warmup: int = 0) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an optimiser, got {optimizer!r}")
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr)
        self.warmup = warmup
        self.count = 0
        problems = self._problems(self._settings())
        if problems:
            raise ValueError(f"{type(self).__name__}: " + "; ".join(problems))
        optimizer.lr = self.at(0)

    def decay(self, n: int) -> float:
        """The learning rate n counts after the warm-up."""
        raise NotImplementedError

    def at(self, n: int) -> float:
        """The learning rate after n steps (n >= 0): the one for the (n+1)-th update."""
        if n < self.warmup:
            return self.base_lr * (n + 1) / (self.warmup + 1)
        return self.decay(n - self.warmup)

    def step(self) -> None:
        """Count one step and set ``optimizer.lr = at(count)``."""
        if hooks.is_tracing():  # it would run once, when traced, never after
            raise hooks.TraceError(
                f"{type(self).__name__}.step() inside a compiled step: call it between calls"
            )
        self.count += 1
        self.optimizer.lr = self.at(self.count)

    def _settings(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in (*self.INTEGERS, *self.NUMBERS)}

    def _problems(self, settings: Mapping[str, Any]) -> list[str]:
        """What is wrong with ``settings`` (name -> value): a message per problem."""
        problems = []
        for name in self.INTEGERS:
            value = settings[name]
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                problems.append(f"{name} must be a non-negative integer, got {value!r}")
        if not (isinstance(settings["base_lr"], float) and settings["base_lr"] > 0):
            problems.append(
                f"base_lr (the optimiser's lr) must be positive, got {settings['base_lr']!r}"
            )
        return problems

    def state_dict(self) -> dict[str, int | float]:
        """``{"count": n, ...settings}``: Python ints and floats."""
        state: dict[str, int | float] = {"count": self.count}
        state.update({name: int(getattr(self, name)) for name in self.INTEGERS})
        state.update({name: float(getattr(self, name)) for name in self.NUMBERS})
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` saved and set the optimiser's lr to ``at(count)``.

        Everything is checked before anything is assigned: exactly this schedule's
        keys, counts non-negative integers, numbers finite, and the settings as the
        constructor requires them. Otherwise a ValueError names every offending key
        and nothing changes.
        """
        integers, numbers = ("count", *self.INTEGERS), self.NUMBERS
        problems = _key_problems(expected=[*integers, *numbers], given=state)
        loaded: dict[str, Any] = {}
        for key in (*integers, *numbers):
            if key in state:
                read = _count if key in integers else _number
                loaded[key], problem = read(key, state[key])
                if problem:
                    problems.append(problem)
        if not problems:
            problems = self._problems(loaded)
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: " + "; ".join(problems))
        for key, value in loaded.items():
            setattr(self, key, value)
        self.optimizer.lr = self.at(self.count)


class Constant(Schedule):
    """base_lr after the warm-up: decay(n) = base_lr. (``warmup=0``: lr never changes.)"""

    def decay(self, n: int) -> float:
        return self.base_lr


class CosineDecay(Schedule):
    """Half a cosine from base_lr down to ``min_lr`` at count ``total``, then min_lr.

    With D = total - warmup counts of decay and s = min(n, D):

        decay(n) = min_lr + (base_lr - min_lr) * (1 + cos(pi * s / D)) / 2
    """

    INTEGERS = ("warmup", "total")
    NUMBERS = ("base_lr", "min_lr")

    def __init__(
        self, optimizer: Optimizer, total: int, warmup: int = 0, min_lr: float = 0.0
    ) -> None:
        self.total, self.min_lr = total, float(min_lr)
        super().__init__(optimizer, warmup)

    def _problems(self, settings: Mapping[str, Any]) -> list[str]:
        problems = super()._problems(settings)
        if not problems and not settings["total"] > settings["warmup"]:
            problems.append(
                f"total ({settings['total']}) must exceed warmup ({settings['warmup']})"
            )
        min_lr = settings["min_lr"]
        if not problems and not 0 <= min_lr <= settings["base_lr"]:
            problems.append(
                f"min_lr must lie in [0, base_lr = {settings['base_lr']}], got {min_lr}"
            )
        return problems

    def decay(self, n: int) -> float:
        length = self.total - self.warmup
        progress = min(n, length) / length
        return self.min_lr + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * progress)) / 2


class StepDecay(Schedule):
    """base_lr multiplied by ``factor`` every ``every`` counts:

        decay(n) = base_lr * factor ** (n // every)

    (``factor=1``: constant after the warm-up.)
    """

    INTEGERS = ("warmup", "every")
    NUMBERS = ("base_lr", "factor")

    def __init__(
        self, optimizer: Optimizer, every: int, factor: float = 0.1, warmup: int = 0
    ) -> None:
        self.every, self.factor = every, float(factor)
        super().__init__(optimizer, warmup)

    def _problems(self, settings: Mapping[str, Any]) -> list[str]:
        problems = super()._problems(settings)
        if not problems and not settings["every"] >= 1:
            problems.append(f"every must be at least 1, got {settings['every']}")
        if not 0 < settings["factor"] <= 1:
            problems.append(f"factor must lie in (0, 1], got {settings['factor']}")
        return problems

    def decay(self, n: int) -> float:
        return self.base_lr * self.factor ** (n // self.every)


def clip_grad_norm(params: Iterable[Tensor], max_norm: float) -> Tensor:
    """Rescale gradients so that their global L2 norm is at most ``max_norm``.

    The global norm is sqrt(sum over parameters of sum(grad^2)), accumulated in
    float64; parameters without a gradient are ignored. If it exceeds ``max_norm``,
    every gradient is multiplied by max_norm / norm (same direction, norm exactly
    max_norm up to rounding); otherwise by exactly 1. A non-finite norm (inf or nan)
    leaves the gradients as they are: scaling could only turn them into nan. The scale
    is computed as an array, never read in Python, so a compiled step replays it.

    Returns the norm before clipping: a 0-d float64 tensor (``.item()`` for a number).
    """
    if not max_norm > 0:
        raise ValueError(f"clip_grad_norm: max_norm must be positive, got {max_norm}")
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return Tensor(0.0, dtype="float64")
    backend = grads[0].backend
    xp = backend.xp
    squared = xp.zeros((), dtype=xp.float64)
    for grad in grads:
        squared = squared + xp.astype(xp.sum(grad.data * grad.data), xp.float64)
    norm = xp.sqrt(squared)
    scale = xp.where(xp.isfinite(norm), max_norm / xp.maximum(norm, max_norm), 1.0)
    for grad in grads:
        grad.data = grad.data * xp.astype(scale, grad.dtype)
    return Tensor._make(norm, backend)
