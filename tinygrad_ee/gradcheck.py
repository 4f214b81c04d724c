"""Gradient checking: the engine's gradients against central finite differences.

Public so that users can check their own ops and models the way the test suite
checks ours. The output is contracted with a random cotangent ``v``, never with
all ones: with ones, a wrong softmax backward still passes (its rows sum to one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np  # host-side arithmetic on copies, never tensor data

from .backend import dtype_name
from .tensor import Tensor, no_grad


class GradcheckError(AssertionError):
    """The engine's gradient and the finite-difference gradient disagree: ``input`` is
    the index of the input, ``element`` the index of its worst element."""

    def __init__(self, message: str, input: int | None = None, element: tuple = ()) -> None:
        super().__init__(message)
        self.input = input
        self.element = element


def _as_outputs(result: Tensor | Sequence[Tensor]) -> list[Tensor]:
    outputs = [result] if isinstance(result, Tensor) else list(result)
    if not outputs or not all(isinstance(out, Tensor) for out in outputs):
        raise TypeError("gradcheck: fn must return a Tensor or a sequence of Tensors")
    return outputs


def gradcheck(
    fn: Callable[..., Tensor | Sequence[Tensor]],
    *inputs: Any,
    eps: float = 1e-6,
    atol: float = 1e-6,
    rtol: float = 1e-4,
    seed: int = 0,
) -> bool:
    """Check d(v . fn(*inputs))/d(input) for every input with ``requires_grad``.

    ``inputs``: Tensors (those with ``requires_grad=True`` must be float64) or any
    other arguments, passed to ``fn`` unchanged. ``fn`` returns a Tensor or a
    sequence of Tensors; each output gets its own random cotangent ``v``
    (standard normal, seeded by ``seed``). The engine's gradient must match the
    central difference ``(L(x + eps) - L(x - eps)) / (2 eps)`` element by element
    within ``atol + rtol * |numeric|``.

    Returns True, or raises `GradcheckError` naming the worst element.
    """
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, nothing to check")
    for i in checked:
        if dtype_name(inputs[i].dtype) != "float64":
            raise TypeError(
                f"gradcheck: input {i} is {inputs[i].dtype}; use float64 "
                "(float32 finite differences are too coarse to trust)"
            )

    # Fresh leaves, so the caller's .grad is left alone.
    leaves = [
        Tensor._make(x.data, x.backend).requires_grad_() if i in checked else x
        for i, x in enumerate(inputs)
    ]
    outputs = _as_outputs(fn(*leaves))
    rng = np.random.default_rng(seed)
    cotangents = [rng.standard_normal(out.shape) for out in outputs]
    for out, v in zip(outputs, cotangents):
        if out.requires_grad:
            out.backward(Tensor(v, device=out.backend, dtype=out.dtype), retain_graph=True)

    def objective(args: list) -> float:
        with no_grad():
            values = _as_outputs(fn(*args))
        return float(sum(np.sum(out.numpy() * v) for out, v in zip(values, cotangents)))

    for i in checked:
        x = inputs[i]
        analytic = leaves[i].grad.numpy() if leaves[i].grad is not None else np.zeros(x.shape)
        base = x.numpy()
        numeric = np.zeros(x.shape)
        for index in np.ndindex(*x.shape):
            values = []
            for step in (eps, -eps):
                moved = base.copy()
                moved[index] += step
                args = list(leaves)
                args[i] = Tensor(moved, device=x.backend)
                values.append(objective(args))
            numeric[index] = (values[0] - values[1]) / (2 * eps)
        error = np.abs(analytic - numeric)
        excess = error - (atol + rtol * np.abs(numeric))
        off = ~(excess <= 0)  # NaN is off too: a NaN gradient must not pass
        if off.any():
            excess = np.where(np.isnan(excess), np.inf, excess)
            worst = tuple(int(k) for k in np.unravel_index(int(np.argmax(excess)), x.shape))
            raise GradcheckError(
                f"gradcheck failed for input {i} (shape {x.shape}) at element "
                f"{worst}: engine gradient {analytic[worst]:.6g}, "
                f"finite differences {numeric[worst]:.6g}, |difference| "
                f"{error[worst]:.3g} > tolerance {atol + rtol * abs(numeric[worst]):.3g} "
                f"(atol {atol:g} + rtol {rtol:g} * |numeric|); "
                f"{int(off.sum())} of {excess.size} elements are off",
                input=i,
                element=worst,
            )
    return True
