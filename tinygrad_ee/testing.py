"""Property tests for ops, the engine's own and yours: `check_op` (needs ``hypothesis``).

    import tinygrad_ee as tg
    from tinygrad_ee.domains import REAL
    from tinygrad_ee.testing import check_op

    @tg.op(REAL)
    def swish(be, x):
        s = 1 / (1 + be.xp.exp(-x))
        return x * s, lambda g: (g * (s + x * s * (1 - s)),)

    check_op(swish)  # returns quietly, or raises OpCheckError saying what is wrong

`check_op` draws calls of the op with hypothesis: shapes (for an elementwise op, shapes
that broadcast together), values in its input domains, and its parameters. Each call
is checked on every available backend ("cpu", "strict", and "cuda" where CuPy sees a
GPU) by four checks, each usable alone:

- `check_gradient`: float64 gradients against central finite differences (`gradcheck`),
  each output contracted with its own random cotangent;
- `check_float32`: outputs and gradients computed in float32 against float64 at the
  same inputs (the float32 ones): the largest difference must stay within
  ``float32_rtol`` times the largest value, which float32 rounding does and a backward
  that loses precision badly does not;
- `check_compiled`: outputs and gradients from a `tg.compile` step equal to eager, on
  the traced call and on a replay with fresh values;
- `check_anomaly`: under `tg.detect_anomaly()`, finite inputs in the domains raise
  nothing, forward or backward, and a NaN or infinity put in one input raises
  `AnomalyError` naming the op and that input.

A failure is shrunk by hypothesis to a minimal call; `OpCheckError` names the check, the
backend, the input and its worst element, and shows the call.
"""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np  # host copies: drawn values, comparisons
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from .anomaly import AnomalyError, detect_anomaly
from .backend import DeviceError, dtype_name, get_backend
from .compiler.step import compile as compile_step
from .domains import Domain
from .gradcheck import GradcheckError, gradcheck
from .ops import OpSpec
from .strategies import arrays, op_cases
from .tensor import Tensor

CHECKS = ("gradient", "float32", "compiled", "anomaly")
COMPILED_RTOL = 1e-10  # compiled against eager: equal but for fused kernels' rounding (CUDA)


class OpCheckError(AssertionError):
    """An op failed one of `check_op`'s checks (the message says which, and where)."""


def available_devices() -> list[str]:
    """The backends this machine can run: "cpu", "strict" (with array-api-strict) and
    "cuda" (with CuPy and a GPU)."""
    devices = ["cpu"]
    for device in ("strict", "cuda"):
        try:
            get_backend(device)
        except DeviceError:
            continue
        devices.append(device)
    return devices


def check_op(
    op: Callable | OpSpec,
    *,
    shapes: st.SearchStrategy | None = None,
    params: dict | st.SearchStrategy | None = None,
    devices: Sequence[str] | None = None,
    checks: Sequence[str] = CHECKS,
    max_examples: int = 50,
    float32_rtol: float = 1e-3,
) -> None:
    """Property-test ``op`` (made by `tg.op`, or a registry entry); raise `OpCheckError`.

    ``shapes``: a strategy drawing one shape per tensor input, as a tuple (default: what
    the op's ``kind`` draws; "elementwise": shapes that broadcast together).
    ``params``: the op's keyword parameters, a dict or a strategy drawing one (default:
    the kind's). ``devices``: the backends to check on (default: `available_devices`).
    ``checks``: which of `CHECKS` to run. ``max_examples``: calls hypothesis draws (the
    active hypothesis profile's other settings apply, e.g. ``derandomize``).
    """
    spec = _spec(op)
    devices = list(devices) if devices is not None else available_devices()
    for device in devices:
        get_backend(device)  # DeviceError now, not a failed check later
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown:
        raise ValueError(f"check_op: unknown checks {unknown}; the checks are {list(CHECKS)}")

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,  # one inner test for every op: saved examples would mix
        report_multiple_bugs=False,
        phases=[Phase.explicit, Phase.generate, Phase.target, Phase.shrink],  # not explain
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(cases(spec, shapes, params), label="call")
        fresh = data.draw(_fresh(case), label="fresh values") if "compiled" in checks else None
        poison = data.draw(_poison(case), label="poison") if "anomaly" in checks else None
        for device in devices:
            if "gradient" in checks:
                check_gradient(case, device)
            if "float32" in checks:
                check_float32(case, device, float32_rtol)
            if "compiled" in checks:
                check_compiled(case, fresh, device)
            if "anomaly" in checks:
                check_anomaly(case, device, poison)

    run()


# --- drawn calls ----------------------------------------------------------------------
class Case:
    """One call of an op: its inputs as host arrays (float inputs in float64), in the
    order of the op's tensor inputs, and its keyword parameters."""

    def __init__(self, spec: OpSpec, arrays: Sequence[np.ndarray], params: dict) -> None:
        self.spec, self.arrays, self.params = spec, tuple(arrays), params

    def domain(self, i: int) -> Domain:
        return _domain(self.spec, i)

    def is_float(self, i: int) -> bool:
        return self.domain(i).kind == "float"

    def name(self, i: int) -> str:
        """Input ``i`` as a message names it: "input 1 (s)"."""
        return f"input {i} ({_input_names(self.spec, len(self.arrays))[i]})"

    def tensors(self, device: str, dtype: str = "float64") -> list[Tensor]:
        """The inputs on ``device``, float ones as ``dtype`` and requiring gradients."""
        return [
            Tensor(a, device=device, dtype=dtype, requires_grad=True)
            if self.is_float(i)
            else Tensor(a, device=device)
            for i, a in enumerate(self.arrays)
        ]

    def replace(self, arrays: Sequence[np.ndarray]) -> Case:
        return Case(self.spec, arrays, self.params)

    def __repr__(self) -> str:
        """The call as code would read: ``f(x: shape (2,) float64 = [0.5, 1.0], axis=0)``;
        values of inputs up to 16 elements."""
        parts = []
        for name, a in zip(_input_names(self.spec, len(self.arrays)), self.arrays):
            text = f"{name}: shape {a.shape} {dtype_name(a.dtype)}"
            parts.append(text + (f" = {a.tolist()!r}" if a.size <= 16 else ""))
        parts += [f"{key}={value!r}" for key, value in self.params.items()]
        return f"{self.spec.name}({', '.join(parts)})"


@st.composite
def cases(draw: Callable, spec: OpSpec, shapes: Any = None, params: Any = None) -> Case:
    """A call of ``spec``'s op: shapes from ``shapes`` (a strategy of tuples) or else the
    op's kind (`strategies.op_cases`), values in its domains, parameters from ``params``
    (a dict or a strategy) or else the kind's."""
    if shapes is None:
        tensors, drawn_params = draw(op_cases(spec))
        values = [t.numpy() for t in tensors]
    else:
        drawn = draw(shapes)
        names = _input_names(spec, len(drawn))
        if len(drawn) != len(names):
            raise ValueError(
                f"check_op({spec.name}): shapes drew {len(drawn)} shapes for the "
                f"{len(names)} tensor inputs {names}"
            )
        values = [draw(arrays(tuple(s), _domain(spec, i))) for i, s in enumerate(drawn)]
        drawn_params = {}
    if isinstance(params, st.SearchStrategy):
        drawn_params = draw(params)
    elif params is not None:
        drawn_params = dict(params)
    return Case(spec, tuple(values), drawn_params)


@st.composite
def _fresh(draw: Callable, case: Case) -> Case:
    """New values of the same shapes and domains (indices below the drawn ones' top)."""
    values = []
    for i, a in enumerate(case.arrays):
        high = int(a.max()) + 1 if case.domain(i).kind == "index" and a.size else 1
        values.append(draw(arrays(a.shape, case.domain(i), high=high)))
    return case.replace(values)


@st.composite
def _poison(draw: Callable, case: Case) -> tuple[int, int, float] | None:
    """(input, flat element, value): where to put a NaN or infinity (None: no float input)."""
    floats = [i for i, a in enumerate(case.arrays) if case.is_float(i) and a.size]
    if not floats:
        return None
    i = draw(st.sampled_from(floats))
    element = draw(st.integers(0, case.arrays[i].size - 1))
    return i, element, draw(st.sampled_from([np.nan, np.inf, -np.inf]))


# --- the checks -----------------------------------------------------------------------
def check_gradient(case: Case, device: str) -> None:
    """float64 gradients of every float input against central finite differences."""
    inputs = case.tensors(device)
    if not any(x.requires_grad for x in inputs):
        return
    with _failing(case, device, "the gradient check"):
        try:
            gradcheck(lambda *xs: case.spec.function(*xs, **case.params), *inputs)
        except GradcheckError as error:
            raise _failure(
                case, device, f"the gradient of {case.name(error.input)} is wrong: {error}"
            ) from None


def check_float32(case: Case, device: str, rtol: float = 1e-3) -> None:
    """Outputs and gradients in float32 against float64 at the same inputs: the float
    inputs and float parameters rounded to float32 for both runs."""
    rounded = Case(
        case.spec,
        [_to_float32(a) if case.is_float(i) else a for i, a in enumerate(case.arrays)],
        {k: _to_float32(v) if type(v) is float else v for k, v in case.params.items()},
    )
    with _failing(case, device, "the float64 run of the float32 check"):
        expected = _forward_backward(rounded, device, "float64", round_cotangents=True)
    with _failing(case, device, "the float32 run"):
        got = _forward_backward(rounded, device, "float32", round_cotangents=True)
    for (what, a), (_, r) in zip(got, expected):
        problem = _difference(a, r, rtol)
        if problem:
            raise _failure(case, device, f"in float32, {what} differs from float64 {problem}")


def check_compiled(case: Case, fresh: Case, device: str) -> None:
    """Outputs and gradients from a compiled step equal to eager: on the traced call,
    and replayed on ``fresh`` (the same shapes, new values)."""
    with _failing(case, device, "the eager run"):
        outputs = _as_list(case.spec.function(*case.tensors(device), **case.params))
    cotangents = _cotangents(outputs, device)

    def step(*args: Tensor) -> list[Tensor]:
        inputs = args[: len(case.arrays)]
        for x in inputs:
            x.grad = None
        outputs = _as_list(case.spec.function(*inputs, **case.params))
        _backward(outputs, args[len(case.arrays) :])
        return outputs + [x.grad for x in inputs if x.requires_grad]

    compiled = compile_step(step)
    for call, values in (("traced call", case), ("replay", fresh)):
        with _failing(values, device, f"the compiled step ({call})"):
            got = compiled(*values.tensors(device), *cotangents)
        with _failing(values, device, "the eager run"):
            expected = step(*values.tensors(device), *cotangents)
        names = _result_names(values, len(outputs))
        for name, a, e in zip(names, got, expected):
            problem = _difference(_host(a), _host(e), COMPILED_RTOL)
            if problem:
                raise _failure(
                    values, device, f"compiled ({call}), {name} differs from eager {problem}"
                )


def check_anomaly(case: Case, device: str, poison: tuple[int, int, float] | None) -> None:
    """Under anomaly mode: finite inputs raise nothing; ``poison`` (input, flat element,
    value) makes the forward raise `AnomalyError` naming the op and the input."""
    with np.errstate(all="ignore"), detect_anomaly():  # NaNs are the point here
        with _failing(case, device, "a clean run under detect_anomaly()"):
            _forward_backward(case, device, "float64")
        if poison is None:
            return
        i, element, value = poison
        arrays = [a.copy() for a in case.arrays]
        arrays[i].reshape(-1)[element] = value
        word = "nan" if np.isnan(value) else "inf"
        at = tuple(int(k) for k in np.unravel_index(element, arrays[i].shape))
        where = f"{value} at element {at} of "
        poisoned = case.replace(arrays)
        try:
            case.spec.function(*poisoned.tensors(device), **case.params)
        except AnomalyError as error:
            expected = rf"^{re.escape(case.spec.name)} was given {word} in its input {i} "
            if not re.match(expected, str(error)):
                raise _failure(
                    poisoned, device, f"{where}{case.name(i)} was reported as: {error}"
                ) from None
            return
        except Exception as error:
            raise _failure(
                poisoned,
                device,
                f"{where}{case.name(i)} raised {_describe(error)}, not AnomalyError",
            ) from error
        raise _failure(poisoned, device, f"{where}{case.name(i)} raised no AnomalyError")


# --- helpers --------------------------------------------------------------------------
def _spec(op: Callable | OpSpec) -> OpSpec:
    spec = op if isinstance(op, OpSpec) else getattr(op, "spec", None)
    if not isinstance(spec, OpSpec):
        raise TypeError(f"check_op: {op!r} is not an op made by tinygrad_ee.op")
    return spec


def _domain(spec: OpSpec, i: int) -> Domain:
    """Input ``i``'s domain (a forward taking any number of inputs declares one for all)."""
    return spec.domains[min(i, len(spec.domains) - 1)]


def _input_names(spec: OpSpec, count: int) -> list[str]:
    """The forward's names of an op's ``count`` tensor inputs: "x", or "xs[0]", "xs[1]",
    ... for a forward taking any number (``*xs``)."""
    parameters = list(inspect.signature(spec.forward).parameters.values())[1:]  # after be
    if parameters and parameters[0].kind is parameters[0].VAR_POSITIONAL:
        return [f"{parameters[0].name}[{i}]" for i in range(count)]
    return [p.name for p in parameters if p.default is p.empty]


def _to_float32(value: Any) -> Any:
    """``value`` (a float64 array or a Python float) rounded to float32, kept as it was."""
    if isinstance(value, float):
        return float(np.float32(value))
    return value.astype(np.float32).astype(np.float64)


def _as_list(result: Any) -> list[Tensor]:
    return list(result) if isinstance(result, (list, tuple)) else [result]


def _cotangents(outputs: list[Tensor], device: str, round_to_float32: bool = False) -> list:
    """A random standard-normal Tensor per output that needs a gradient (seeded: the same
    for every run of one call), in the output's dtype."""
    rng = np.random.default_rng(0)
    found = []
    for out in outputs:
        if out.requires_grad:
            v = rng.standard_normal(out.shape)
            if round_to_float32:
                v = v.astype(np.float32).astype(np.float64)
            found.append(Tensor(v, device=device, dtype=out.dtype))
    return found


def _backward(outputs: list[Tensor], cotangents: Sequence[Tensor]) -> None:
    """One backward pass of sum(v . output) over the outputs that need gradients."""
    terms = [(out * v).sum() for out, v in zip([o for o in outputs if o.requires_grad], cotangents)]
    if terms:
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        total.backward()


def _forward_backward(
    case: Case, device: str, dtype: str, round_cotangents: bool = False
) -> list[tuple[str, np.ndarray]]:
    """(what, host array) for each output and each float input's gradient."""
    inputs = case.tensors(device, dtype)
    outputs = _as_list(case.spec.function(*inputs, **case.params))
    _backward(outputs, _cotangents(outputs, device, round_cotangents))
    results = outputs + [x.grad for x in inputs if x.requires_grad]
    return list(zip(_result_names(case, len(outputs)), (_host(r) for r in results)))


def _result_names(case: Case, count: int) -> list[str]:
    outputs = ["the output"] if count == 1 else [f"output {k}" for k in range(count)]
    grads = [f"the gradient of {case.name(i)}" for i in range(len(case.arrays)) if case.is_float(i)]
    return outputs + grads


def _host(x: Tensor | None) -> np.ndarray:
    return np.zeros(0) if x is None else np.asarray(x.numpy(), dtype=np.float64)


def _difference(got: np.ndarray, expected: np.ndarray, rtol: float) -> str | None:
    """None when every element of ``got`` is within ``rtol`` times the largest |value| of
    ``expected`` (a NaN never is), else where and by how much it is not."""
    if got.shape != expected.shape:
        return f"in shape: {got.shape} against {expected.shape}"
    if not got.size:
        return None
    scale = float(np.max(np.abs(expected))) if np.isfinite(expected).all() else np.inf
    error = np.abs(got - expected)
    excess = error - (rtol * scale + np.finfo(np.float32).tiny)
    excess = np.where(np.isnan(excess), np.inf, excess)
    if excess.max() <= 0:
        return None
    worst = np.unravel_index(int(np.argmax(excess)), got.shape)
    share = error[worst] / scale if scale else np.inf
    return (
        f"at element {tuple(int(k) for k in worst)}: {got[worst]:.9g} against "
        f"{expected[worst]:.9g}, a difference of {share:.2g} x the largest |value| "
        f"{scale:.3g} (allowed: {rtol:g} x)"
    )


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _failure(case: Case, device: str, problem: str) -> OpCheckError:
    return OpCheckError(f"check_op({case.spec.name}) on {device!r}: {problem}\n  call: {case!r}")


@contextlib.contextmanager
def _failing(case: Case, device: str, part: str) -> Iterator[None]:
    """Any exception in the block becomes an `OpCheckError` naming the part of the check
    that raised it (a failure already reported passes through)."""
    try:
        yield
    except OpCheckError:
        raise
    except Exception as error:
        raise _failure(case, device, f"{part} raised {_describe(error)}") from error
