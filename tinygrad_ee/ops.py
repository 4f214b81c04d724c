"""Every differentiable op: its forward and its backward, side by side.

An op is written on raw arrays: ``forward(be, *arrays, **params)`` returns the
output and a ``backward(grad)`` closure that returns one gradient per input.
``be`` is the backend; ``be.xp`` its Array API namespace. Inputs may also be
Python numbers (constants); their gradients are ignored. Binary ops broadcast,
and the engine (not the op) sums each gradient back to its input's shape.

`op` (public as ``tg.op``) turns such a forward into a function on Tensors, with one
input domain per tensor input; users write their own ops with it
(docs/testing-your-ops.md). The engine's ops are the same, added to ``REGISTRY``
with ``@REGISTRY.op``; the property tests enumerate the registry and check every
entry with ``tinygrad_ee.testing.check_op``.
"""

from __future__ import annotations

import builtins
import inspect
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .backend import host_copy
from .compiler.hooks import require
from .domains import (
    AWAY_FROM_ZERO,
    BOOL,
    DISTINCT,
    EXPONENT,
    INDEX,
    INSIDE_CLIP,
    NONZERO,
    POSITIVE,
    PROBABILITY,
    REAL,
    Domain,
)
from .tensor import Tensor, _device_mismatch, _is_floating, apply, apply_multi, no_grad

Axis = int | tuple[int, ...] | None


@dataclass(frozen=True)
class OpSpec:
    """What `op` knows of an op (its function's ``.spec``): its name, Tensor-level
    function, array-level forward, input domains (one per tensor input), call kind (how
    `strategies.op_cases` calls it), the dtypes its data inputs accept (a key of
    ``DTYPE_KINDS``) and whether it returns a list of outputs."""

    name: str
    function: Callable
    forward: Callable
    domains: tuple[Domain, ...]
    kind: str = "elementwise"
    dtypes: str = "float"
    multiple_outputs: bool = False


DTYPE_KINDS = {
    "float": frozenset({"float"}),
    "numeric": frozenset({"float", "int"}),
    "any": frozenset({"float", "int", "bool"}),
}
"""What an op's data inputs may hold: floats only (exp, div, ...), numbers (add, max,
...) or anything (reshape, concat, ...). Bool and index inputs (`where`'s condition,
`gather`'s indices) are set by their domain instead."""


def _accepted_kinds(domains: Sequence[Domain], dtypes: str) -> tuple[frozenset, ...]:
    by_domain = {"bool": frozenset({"bool"}), "index": frozenset({"int"})}
    return tuple(by_domain.get(d.kind, DTYPE_KINDS[dtypes]) for d in domains)


def op(
    *domains: Domain,
    dtypes: str = "float",
    kind: str = "elementwise",
    name: str | None = None,
    multiple_outputs: bool = False,
) -> Callable[[Callable], Callable]:
    """Make ``forward(be, *arrays, **params) -> (out, backward)`` an op on Tensors.

    ``domains``: one `Domain` per tensor input of ``forward`` (where `check_op` draws
    its values). ``dtypes``: what its data inputs may hold, "float" (the default),
    "numeric" or "any"; they must also share one dtype (no silent promotion, which
    backends disagree on). ``kind``: how the test kit calls it (`strategies.op_cases`);
    the default, "elementwise", gives every input a shape that broadcasts with the
    others'. ``name``: the op's name in messages (default: the forward's).
    ``multiple_outputs``: ``forward`` returns a list of arrays, the op a list of Tensors,
    and ``backward`` gets a list of one gradient per output (zeros for an output that
    was not used).

    The op takes its tensor inputs by position and its parameters by keyword. It is
    registered nowhere: its `OpSpec` is the function's ``.spec``, and a `Registry`
    lists it only when asked to (``registry.add(fn)`` or ``@registry.op(...)``).
    """
    if dtypes not in DTYPE_KINDS:
        raise ValueError(f"op: dtypes must be one of {sorted(DTYPE_KINDS)}, got {dtypes!r}")
    if not domains or not all(isinstance(d, Domain) for d in domains):
        raise TypeError("op: give one tinygrad_ee.domains.Domain per tensor input")
    accepts = _accepted_kinds(domains, dtypes)
    run = apply_multi if multiple_outputs else apply

    def make(forward: Callable) -> Callable:
        op_name = name or forward.__name__
        parameters = list(inspect.signature(forward).parameters.values())[1:]  # after be
        if any(p.kind is p.VAR_POSITIONAL for p in parameters):
            data_kinds = accepts[:1]

            def tensor_op(*inputs: Any, **params: Any) -> Any:  # concat, stack: any count
                return run(forward, op_name, inputs, params, data_kinds * len(inputs))

        else:
            tensor_names = [p.name for p in parameters if p.default is p.empty]
            if len(tensor_names) != len(domains):
                raise TypeError(
                    f"op {op_name!r}: its forward takes tensors {tensor_names} (the parameters "
                    f"after be without a default) but {len(domains)} domains were given"
                )

            def tensor_op(*inputs: Any, **params: Any) -> Any:
                return run(forward, op_name, inputs, params, accepts)

        tensor_op.__name__ = tensor_op.__qualname__ = op_name
        tensor_op.__doc__ = forward.__doc__
        spec = OpSpec(op_name, tensor_op, forward, domains, kind, dtypes, multiple_outputs)
        tensor_op.spec = spec
        return tensor_op

    return make


class Registry(dict):
    """Ops by name (name -> `OpSpec`), to list and test them together.

    ``tinygrad_ee.REGISTRY`` holds the engine's own ops. An op is added only by `add`
    (or the registry's own `op` decorator), never by defining it, so each library keeps
    its ops in a registry of its own; a name already there is refused, never replaced.
    """

    def add(self, function: Callable) -> Callable:
        """Add an op made by `op` under its name; returns it unchanged."""
        spec = getattr(function, "spec", None)
        if not isinstance(spec, OpSpec):
            raise TypeError(f"Registry.add: {function!r} is not an op made by tinygrad_ee.op")
        if spec.name in self:
            raise ValueError(f"Registry.add: an op named {spec.name!r} is registered already")
        self[spec.name] = spec
        return function

    def op(self, *domains: Domain, **options: Any) -> Callable[[Callable], Callable]:
        """The module's `op` decorator, adding the op to this registry."""
        return lambda forward: self.add(op(*domains, **options)(forward))


REGISTRY = Registry()
"""The engine's own ops."""


# --- helpers shared by several ops (plain array code, no graph) ---------------
def _axes(axis: Axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    for a in axis:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for {ndim} axes")
    return tuple(a % ndim for a in axis)


def _at_least_1d(x: Any, name: str) -> int:
    if x.ndim == 0:
        raise ValueError(f"{name}: needs a tensor with at least one axis, got a 0-d tensor")
    return x.ndim


def _expand_to(xp: Any, grad: Any, shape: tuple[int, ...], axes: tuple[int, ...]) -> Any:
    """Undo a reduction over ``axes``: put the axes back as size 1, then broadcast."""
    kept = tuple(1 if i in axes else n for i, n in enumerate(shape))
    return xp.broadcast_to(xp.reshape(grad, kept), shape)


def _along(axis: int, index: Any) -> tuple:
    """An index selecting ``index`` along ``axis`` (Ellipsis covers the rest)."""
    return (slice(None),) * axis + (index, Ellipsis)


def _checked_indices(be: Any, indices: Any, count: int, name: str) -> Any:
    """Integer ``indices`` (`apply` checked the dtype) as int64 (narrow ints overflow in
    index arithmetic), all in [0, count).

    Checked here because libraries differ on the rest: NumPy wraps negative indices,
    CuPy wraps out-of-range ones silently."""
    xp = be.xp
    indices = xp.astype(indices, xp.int64, copy=False)
    if indices.shape[0]:
        low, high = xp.min(indices), xp.max(indices)
        require(
            (low >= 0) & (high < count),
            lambda low, high: IndexError(
                f"{name}: indices must lie in [0, {count}), got values from "
                f"{int(host_copy(low))} to {int(host_copy(high))}"
            ),
            low,
            high,
        )
    return indices


# --- arithmetic ------------------------------------------------------------------
@REGISTRY.op(REAL, REAL, kind="binary", dtypes="numeric")
def add(be, x, y):
    """x + y, broadcasting."""
    return x + y, lambda g: (g, g)


@REGISTRY.op(REAL, REAL, kind="binary", dtypes="numeric")
def sub(be, x, y):
    """x - y, broadcasting."""
    return x - y, lambda g: (g, -g)


@REGISTRY.op(REAL, REAL, kind="binary", dtypes="numeric")
def mul(be, x, y):
    """x * y, broadcasting."""
    return x * y, lambda g: (g * y, g * x)


@REGISTRY.op(REAL, NONZERO, kind="binary", dtypes="float")
def div(be, x, y):
    """x / y, broadcasting."""

    def backward(g):
        gx = g / y
        return gx, -gx * x / y

    return x / y, backward


@REGISTRY.op(REAL, kind="unary", dtypes="numeric")
def neg(be, x):
    """-x."""
    return -x, lambda g: (-g,)


@REGISTRY.op(POSITIVE, EXPONENT, kind="binary", dtypes="float")
def pow(be, x, y):
    """x ** y. With a Python-number exponent any base works; a tensor exponent
    needs a positive base (its gradient holds log x)."""
    out = x**y

    def backward(g):
        # d/dx x^y = y x^(y-1), which is 0 where y = 0 even at x = 0 (not 0 * inf = nan):
        # the exponent y - 1 is taken as 0 there, so nothing divides by zero.
        if isinstance(x, (int, float)):
            gx = None
        elif isinstance(y, (int, float)):
            gx = be.xp.zeros_like(g) if y == 0 else g * y * x ** (y - 1)
        else:
            gx = g * y * x ** (be.xp.where(y == 0, 1.0, y) - 1)
        if isinstance(y, (int, float)):
            return gx, None
        if isinstance(x, (int, float)):
            log_x = math.log(x) if x > 0 else math.nan
        else:  # log only where defined: a tensor exponent needs a positive base
            log_x = be.xp.where(x > 0, be.xp.log(be.xp.where(x > 0, x, 1.0)), math.nan)
        return gx, g * out * log_x

    return out, backward


# --- elementwise functions ------------------------------------------------------
@REGISTRY.op(REAL, kind="unary", dtypes="float")
def exp(be, x):
    """e ** x."""
    out = be.xp.exp(x)
    return out, lambda g: (g * out,)


@REGISTRY.op(POSITIVE, kind="unary", dtypes="float")
def log(be, x):
    """Natural logarithm."""
    return be.xp.log(x), lambda g: (g / x,)


@REGISTRY.op(POSITIVE, kind="unary", dtypes="float")
def sqrt(be, x):
    """Square root."""
    out = be.xp.sqrt(x)
    return out, lambda g: (g / (2 * out),)


@REGISTRY.op(AWAY_FROM_ZERO, kind="unary", dtypes="numeric")
def abs(be, x):
    """|x|; the gradient at 0 is 0."""
    return be.xp.abs(x), lambda g: (g * be.xp.sign(x),)


def _exp_neg_abs(xp: Any, x: Any) -> Any:
    """exp(-|x|), in [0, 1]: the one exponential the logistic functions need. It never
    overflows, and -|x| is exact (no rounding in the argument)."""
    e = xp.abs(x)
    e *= -1  # in place on an array made here
    return xp.exp(e)


def _sigmoid_from(xp: Any, e: Any, nonnegative: Any) -> tuple[Any, Any]:
    """(sigmoid(y), r = 1 / (1 + e)) from e = exp(-|y|) and the mask where y >= 0.

    sigmoid(y) = e^min(y, 0) r: r where y >= 0, e r below, each at full relative
    precision. e^min(y, 0), 1 or e, is computed as max(e, mask), not with where(): NumPy's
    where() branches per element, about 10 times slower when the signs are mixed."""
    r = 1 / (1 + e)
    out = xp.maximum(e, xp.astype(nonnegative, e.dtype))
    out *= r
    return out, r


@REGISTRY.op(REAL, kind="unary", dtypes="float")
def tanh(be, x):
    """Hyperbolic tangent."""
    xp = be.xp

    def backward(g):
        # 1 - tanh(x)^2 = sech(x)^2 = (2 e / (1 + e^2))^2 with e = exp(-|x|): full relative
        # precision where tanh(x) rounds to +-1, unlike 1 - out * out (0 in float32 from
        # |x| = 9 on). Nothing overflows, and no intermediate is far smaller than the result.
        slope = _exp_neg_abs(xp, x)
        square = slope * slope
        square += 1
        slope /= square  # sech(x) / 2; in place on arrays made here: fewer temporaries
        slope *= slope
        slope *= 4
        slope *= g
        return (slope,)

    return xp.tanh(x), backward


@REGISTRY.op(REAL, kind="unary", dtypes="float")
def sigmoid(be, x):
    """1 / (1 + e^-x) at full relative precision in both tails, never overflowing: with
    e = exp(-|x|) and r = 1 / (1 + e), it is r where x >= 0 and e r below."""
    e = _exp_neg_abs(be.xp, x)
    out, r = _sigmoid_from(be.xp, e, x >= 0)

    def backward(g):
        # sigmoid(x) sigmoid(-x) = e r r on both sides of 0; never out (1 - out), which
        # loses the small factor's precision as out -> 1.
        slope = e * r
        slope *= r
        slope *= g
        return (slope,)

    return out, backward


@REGISTRY.op(REAL, kind="unary", dtypes="float")
def softplus(be, x):
    """log(1 + e^x), computed as max(x, 0) + log1p(e^-|x|): never overflows, full
    relative precision in both tails. Its derivative is sigmoid(x)."""
    xp = be.xp
    e = _exp_neg_abs(xp, x)
    out = xp.log1p(e)
    out += xp.maximum(x, 0)

    def backward(g):
        slope, _ = _sigmoid_from(xp, e, x >= 0)
        slope *= g
        return (slope,)

    return out, backward


@REGISTRY.op(REAL, kind="unary", dtypes="float")
def log_sigmoid(be, x):
    """log(sigmoid(x)) = -softplus(-x), computed as min(x, 0) - log1p(e^-|x|): finite
    and at full relative precision for inputs of any magnitude (log(x.sigmoid()) is
    -inf once sigmoid(x) underflows: below about -104 in float32). Its derivative is
    sigmoid(-x)."""
    xp = be.xp
    e = _exp_neg_abs(xp, x)
    out = xp.minimum(x, 0)
    out -= xp.log1p(e)

    def backward(g):
        slope, _ = _sigmoid_from(xp, e, x <= 0)
        slope *= g
        return (slope,)

    return out, backward


@REGISTRY.op(AWAY_FROM_ZERO, kind="unary", dtypes="numeric")
def relu(be, x):
    """max(x, 0); the gradient at 0 is 0."""
    positive = x > 0
    return be.xp.where(positive, x, 0), lambda g: (be.xp.where(positive, g, 0.0),)


def _mix32(xp: Any, x: Any) -> Any:
    """An integer hash of uint32 values (lowbias32: two xor-shift-multiply rounds, each
    output bit depending on every input bit); multiplications wrap modulo 2^32."""
    for shift, factor in ((16, 0x7FEB352D), (15, 0x846CA68B)):
        x = xp.multiply(xp.bitwise_xor(x, xp.bitwise_right_shift(x, shift)), factor)
    return xp.bitwise_xor(x, xp.bitwise_right_shift(x, 16))


def _keyed_uniform(xp: Any, shape: tuple[int, ...], key: Any, dtype: Any) -> Any:
    """Numbers in [0, 1) of ``shape`` and ``dtype``, a function of the integer ``key``
    alone: each element's flat index, hashed with the key (`_mix32`), its top 24 bits.
    Nothing is drawn from a generator, so every backend gives the same numbers and a
    compiled step replays them exactly, given the same key."""
    key = xp.astype(xp.remainder(xp.astype(xp.reshape(key, (1,)), xp.int64), 2**32), xp.uint32)
    index = xp.multiply(xp.arange(math.prod(shape), dtype=xp.uint32), 0x9E3779B9)
    bits = _mix32(xp, xp.bitwise_xor(_mix32(xp, xp.bitwise_xor(index, key)), key))
    top = xp.astype(xp.bitwise_right_shift(bits, 8), dtype)
    return xp.reshape(top * 2.0**-24, shape)


@REGISTRY.op(REAL, INDEX, kind="dropout", dtypes="float")
def dropout(be, x, key, p=0.5):
    """Each element of ``x`` zeroed with probability ``p``, the others scaled by
    1 / (1 - p) (the mean is kept), the mask a function of ``key`` (an integer tensor of
    one element; `_keyed_uniform`): a new key each training step, none at evaluation."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must lie in [0, 1), got {p!r}")
    if math.prod(key.shape) != 1:
        raise ValueError(f"dropout: key must hold one integer, got shape {tuple(key.shape)}")
    if p == 0:
        return x, lambda g: (g, None)
    kept = be.xp.astype(_keyed_uniform(be.xp, x.shape, key, x.dtype) >= p, x.dtype)
    kept *= 1 / (1 - p)  # in place on an array made here
    return x * kept, lambda g: (g * kept, None)


@REGISTRY.op(INSIDE_CLIP, kind="clip", dtypes="numeric")
def clip(be, x, low=None, high=None):
    """x limited to [low, high]; no gradient flows where x is outside (or on) a bound."""
    if low is None and high is None:
        raise ValueError("clip: give low, high or both")
    if be.kinds[x.dtype] == "int" and any(isinstance(b, float) for b in (low, high)):
        raise TypeError("clip: an integer tensor takes integer bounds (floats would promote)")
    inside = be.xp.ones_like(x, dtype=be.xp.bool)
    if low is not None:
        inside = inside & (x > low)
    if high is not None:
        inside = inside & (x < high)
    return be.xp.clip(x, low, high), lambda g: (be.xp.where(inside, g, 0.0),)


@REGISTRY.op(REAL, kind="astype", dtypes="any")
def astype(be, x, dtype=None):
    """x converted to ``dtype``: a number or bool dtype, by name ("float32") or as this
    device's dtype object. Others (object, strings, Python's float) are refused, as by
    the Tensor constructor: NumPy would convert to them, other backends would not."""
    xp = be.xp
    source = x.dtype
    target = be.dtype(dtype)
    if target not in be.kinds:
        shown = getattr(dtype, "__name__", dtype)
        raise TypeError(
            f"astype: dtype must be a number or bool dtype such as 'float32', got {shown}"
        )
    return xp.astype(x, target), lambda g: (xp.astype(g, source),)


@REGISTRY.op(BOOL, REAL, REAL, kind="where", dtypes="any")
def where(be, condition, x, y):
    """x where ``condition`` (a bool tensor) holds, else y; broadcasting."""
    xp = be.xp
    return xp.where(condition, x, y), lambda g: (
        None,
        xp.where(condition, g, 0.0),
        xp.where(condition, 0.0, g),
    )


# --- reductions -------------------------------------------------------------------
@REGISTRY.op(REAL, kind="reduce", dtypes="any")
def sum(be, x, axis=None, keepdims=False):
    """Sum over ``axis`` (None: all axes). Bools are counted: an int64 result."""
    axes = _axes(axis, x.ndim)
    if be.kinds[x.dtype] == "bool":  # (predicted == truth).sum(); the standard wants ints
        x = be.xp.astype(x, be.xp.int64)
    return be.xp.sum(x, axis=axes, keepdims=keepdims), lambda g: (
        _expand_to(be.xp, g, x.shape, axes),
    )


@REGISTRY.op(REAL, kind="unary", dtypes="float")
def sum_of_squares(be, x):
    """||x||^2, the sum of every element squared: any shape -> 0-d. One op: its gradient
    2 g x is one pass, where x * x then sum records two ops and a broadcast gradient."""
    return be.xp.sum(x * x), lambda g: (x * (2 * g),)


@REGISTRY.op(REAL, kind="reduce", dtypes="float")
def mean(be, x, axis=None, keepdims=False):
    """Mean over ``axis`` (None: all axes)."""
    axes = _axes(axis, x.ndim)
    count = math.prod(x.shape[a] for a in axes)
    if count == 0:
        raise ValueError(f"mean: over no elements (axes {axes} of shape {tuple(x.shape)})")
    return be.xp.mean(x, axis=axes, keepdims=keepdims), lambda g: (
        _expand_to(be.xp, g / count, x.shape, axes),
    )


@REGISTRY.op(DISTINCT, kind="reduce", dtypes="numeric")
def max(be, x, axis=None, keepdims=False):
    """Maximum over ``axis``. Ties share the gradient equally (k tied maxima get
    1/k each); ``Tensor.argmax`` instead picks the first."""
    xp = be.xp
    axes = _axes(axis, x.ndim)
    top = xp.max(x, axis=axes, keepdims=True)

    def backward(g):
        winners = xp.astype(x == top, g.dtype)
        share = winners / xp.sum(winners, axis=axes, keepdims=True)
        return (_expand_to(xp, g, x.shape, axes) * share,)

    return (
        top
        if keepdims
        else xp.reshape(top, tuple(n for i, n in enumerate(x.shape) if i not in axes))
    ), backward


def _log_sum_exp_shifted(xp: Any, shifted: Any, axes: tuple[int, ...]) -> Any:
    """log(sum(exp(shifted))) over ``axes``, kept as size-1 axes, for shifted = x - max(x).

    The sum is 1 (the maximum's own term) plus the rest. When the rest is small, log(1 +
    rest) would round it away (log_softmax of the maximum would be 0, not -rest): log1p of
    the rest, summed without the maximum's term, keeps full relative precision. A tie at
    the maximum makes the sum at least 2, where log is precise as it is."""
    if not axes:  # sums of one term (a 0-d x, or axis=()): log(exp(shifted)) is shifted
        return shifted
    e = xp.exp(shifted)
    total = xp.sum(e, axis=axes, keepdims=True)
    # Without the maxima's terms (each exactly 1). A where, not e[mask] = 0: assigning
    # through a boolean mask counts it on the host first, which a GPU graph cannot do.
    rest = xp.sum(xp.where(shifted == 0, 0.0, e), axis=axes, keepdims=True)
    return xp.where(total < 2, xp.log1p(rest), xp.log(total))


@REGISTRY.op(REAL, kind="reduce", dtypes="float")
def logsumexp(be, x, axis=None, keepdims=False):
    """log(sum(exp(x))) over ``axis``, shifted by the maximum so it never overflows."""
    xp = be.xp
    axes = _axes(axis, x.ndim)
    top = xp.max(x, axis=axes, keepdims=True)
    out = top + _log_sum_exp_shifted(xp, x - top, axes)

    def backward(g):
        return (_expand_to(xp, g, x.shape, axes) * xp.exp(x - out),)

    shape = tuple(n for i, n in enumerate(x.shape) if i not in axes)
    return (out if keepdims else xp.reshape(out, shape)), backward


@REGISTRY.op(REAL, kind="softmax", dtypes="float")
def softmax(be, x, axis=-1):
    """exp(x) / sum(exp(x)) along ``axis``, computed from x - max(x)."""
    xp = be.xp
    (axis,) = _axes(axis, _at_least_1d(x, "softmax"))
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    out = e / xp.sum(e, axis=axis, keepdims=True)
    return out, lambda g: (out * (g - xp.sum(g * out, axis=axis, keepdims=True)),)


def _log_softmax(xp: Any, x: Any, axis: int) -> Any:
    shifted = x - xp.max(x, axis=axis, keepdims=True)
    return shifted - _log_sum_exp_shifted(xp, shifted, (axis,))


@REGISTRY.op(REAL, kind="softmax", dtypes="float")
def log_softmax(be, x, axis=-1):
    """x - logsumexp(x) along ``axis``, computed from x - max(x)."""
    xp = be.xp
    (axis,) = _axes(axis, _at_least_1d(x, "log_softmax"))
    out = _log_softmax(xp, x, axis)
    return out, lambda g: (g - xp.exp(out) * xp.sum(g, axis=axis, keepdims=True),)


@REGISTRY.op(REAL, INDEX, kind="cross_entropy", dtypes="float")
def cross_entropy(be, logits, targets):
    """Mean over N of -log softmax(logits)[n, targets[n]]: logits (N, K), integer
    targets (N,) -> a 0-d loss. One op, because its gradient is simply
    (softmax - one_hot) / N, which saves several (N, K) passes over composing it."""
    xp = be.xp
    count = logits.shape[0]
    if logits.ndim != 2 or targets.shape != (count,) or count == 0:
        raise ValueError(
            "cross_entropy: needs logits (N, K) and targets (N,) with N > 0, got "
            f"{tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    targets = _checked_indices(be, targets, logits.shape[1], "cross_entropy")
    log_probs = _log_softmax(xp, logits, 1)
    picked = xp.take_along_axis(log_probs, xp.reshape(targets, (count, 1)), axis=1)

    def backward(g):
        classes = xp.arange(logits.shape[1], dtype=targets.dtype)
        one_hot = xp.astype(classes[None, :] == targets[:, None], logits.dtype)
        return (xp.exp(log_probs) - one_hot) * (g / count), None

    return -xp.sum(picked) / count, backward


@REGISTRY.op(PROBABILITY, kind="bernoulli_kl", dtypes="float")
def bernoulli_kl(be, q, rho=0.5, eps=1e-6):
    """KL(Bernoulli(rho) || Bernoulli(q)) elementwise, q clipped into [eps, 1 - eps]:
    rho log(rho / q) + (1 - rho) log((1 - rho) / (1 - q)). One op: composed, it is ten
    small ops on a vector, and its gradient is just (q - rho) / (q (1 - q)) (zero where
    the clip holds q).

    Both are written in d = rho - q: near q = rho the KL is O(d^2), and log(rho / q)
    rounds to an absolute error of one ulp of 1, a large share of it (0.2 % in float32
    at d = 0.002), where log1p(d / q) keeps d's relative precision."""
    xp = be.xp
    inside = (q > eps) & (q < 1 - eps)
    q = xp.clip(q, eps, 1 - eps)
    d = rho - q
    out = rho * xp.log1p(d / q) + (1 - rho) * xp.log1p(-d / (1 - q))
    return out, lambda g: (xp.where(inside, g * (-d / (q * (1 - q))), 0.0),)


# --- linear algebra -------------------------------------------------------------
@REGISTRY.op(REAL, REAL, kind="matmul", dtypes="numeric")
def matmul(be, x, y):
    """Matrix product with NumPy's rules: (..., n, k) @ (..., k, m) -> (..., n, m);
    batch axes broadcast; a 1-d operand is a row (left) or column (right) vector."""
    xp = be.xp
    x2 = xp.reshape(x, (1, x.shape[0])) if x.ndim == 1 else x
    y2 = xp.reshape(y, (y.shape[0], 1)) if y.ndim == 1 else y
    out = xp.matmul(x2, y2)

    def backward(g):
        g2 = xp.reshape(g, out.shape)
        gx = xp.matmul(g2, be.transposed_operand(y2))
        gy = xp.matmul(xp.matrix_transpose(x2), g2)
        if x.ndim == 1:
            gx = xp.reshape(xp.sum(gx, axis=tuple(range(gx.ndim - 1))), x.shape)
        if y.ndim == 1:
            gy = xp.reshape(xp.sum(gy, axis=tuple(range(gy.ndim - 2)) + (gy.ndim - 1,)), y.shape)
        return gx, gy

    if x.ndim == 1 or y.ndim == 1:
        keep = out.shape[:-2] + (() if x.ndim == 1 else out.shape[-2:-1])
        keep += () if y.ndim == 1 else out.shape[-1:]
        return xp.reshape(out, keep), backward
    return out, backward


@REGISTRY.op(REAL, REAL, REAL, kind="linear", dtypes="float")
def linear(be, x, weight, bias):
    """x @ weight + bias: x (..., in), weight (in, out) -> (..., out); bias (out,), or a
    whole (..., out) term such as a recurrent cell's projected input.

    One op rather than matmul then add: the bias gradient is one sum over the rows (or
    the output's gradient itself), not a broadcast gradient summed back, and the
    forward adds the bias into the product in place."""
    xp = be.xp
    out_shape = tuple(x.shape[:-1]) + tuple(weight.shape[1:])
    if x.ndim == 0 or weight.ndim != 2 or tuple(bias.shape) not in (out_shape[-1:], out_shape):
        raise ValueError("linear: needs x (..., in), weight (in, out), bias (out,) or (..., out)")
    out = xp.matmul(x, weight)
    out += bias

    def backward(g):
        rows = xp.reshape(g, (-1, g.shape[-1]))
        gw = xp.matmul(xp.matrix_transpose(xp.reshape(x, (-1, x.shape[-1]))), rows)
        gb = xp.sum(rows, axis=0) if bias.ndim == 1 else g
        return xp.matmul(g, be.transposed_operand(weight)), gw, gb

    return out, backward


# --- shapes ----------------------------------------------------------------------
@REGISTRY.op(REAL, kind="reshape", dtypes="any")
def reshape(be, x, shape=()):
    """The same values in ``shape`` (one entry may be -1)."""
    return be.xp.reshape(x, shape), lambda g: (be.xp.reshape(g, x.shape),)


@REGISTRY.op(REAL, kind="permute", dtypes="any")
def permute(be, x, axes=None):
    """Axes reordered: output axis i is input axis ``axes[i]`` (None: reversed)."""
    xp = be.xp
    if axes is None:
        axes = tuple(reversed(range(x.ndim)))
    axes = _axes(axes, x.ndim)
    inverse = tuple(sorted(range(len(axes)), key=axes.__getitem__))
    return xp.permute_dims(x, axes), lambda g: (xp.permute_dims(g, inverse),)


def _index_entry(item: Any) -> Any:
    """A basic index entry with every integer a Python int (NumPy's too: np.int64(1)
    works like 1). Bools are refused: NumPy would read True as a new axis."""
    if isinstance(item, numbers.Integral) and not isinstance(item, bool):
        return int(item)
    if item is None or item is Ellipsis or isinstance(item, slice):
        return item
    raise TypeError(
        f"index entries must be ints, slices, None or ..., got {type(item).__name__}; "
        "to pick rows by an array of indices, index with an integer Tensor (gather)"
    )


@REGISTRY.op(REAL, kind="getitem", dtypes="any")
def getitem(be, x, index=()):
    """Basic indexing: ints, slices, None and Ellipsis (a view; no copy).
    Integer-array indexing is `gather` (index with an integer Tensor)."""
    if not isinstance(index, tuple):
        index = (index,)
    index = tuple(_index_entry(item) for item in index)
    if not any(item is Ellipsis for item in index):
        index = index + (Ellipsis,)  # the standard wants every axis covered

    # Assignment takes no None (new axes): drop them, and the matching size-1 axes of g.
    has_new_axes = any(item is None for item in index)
    plain = tuple(item for item in index if item is not None) if has_new_axes else index

    def backward(g):
        grad = be.xp.zeros_like(x, dtype=g.dtype)
        grad[plain] = g if plain is index else be.xp.reshape(g, x[plain].shape)
        return (grad,)

    return x[index], backward


@REGISTRY.op(REAL, INDEX, kind="gather", dtypes="any")
def gather(be, x, indices):
    """Rows of ``x`` picked by integer ``indices`` of any shape: out[i...] = x[indices[i...]].

    Shapes: x (V, *rest), indices (*idx) -> (*idx, *rest). The backward scatter-adds
    (repeated indices add up) through the backend."""
    xp = be.xp
    flat = _checked_indices(be, xp.reshape(indices, (-1,)), x.shape[0], "gather")
    rest = x.shape[1:]
    out = xp.reshape(xp.take(x, flat, axis=0), tuple(indices.shape) + rest)

    def backward(g):
        return be.scatter_add(x.shape, flat, xp.reshape(g, (flat.shape[0],) + rest)), None

    return out, backward


@REGISTRY.op(REAL, REAL, kind="concat", name="concat", dtypes="any")
def _concat(be, *xs, axis=0):
    """Tensors joined along an existing ``axis``."""
    xp = be.xp
    (axis,) = _axes(axis, _at_least_1d(xs[0], "concat"))
    ends = []
    for x in xs:
        ends.append((ends[-1] if ends else 0) + x.shape[axis])

    def backward(g):
        return tuple(g[_along(axis, slice(end - x.shape[axis], end))] for x, end in zip(xs, ends))

    return xp.concat(xs, axis=axis), backward


@REGISTRY.op(REAL, REAL, kind="stack", name="stack", dtypes="any")
def _stack(be, *xs, axis=0):
    """Tensors of one shape joined along a new ``axis``."""
    xp = be.xp
    (axis,) = _axes(axis, xs[0].ndim + 1)
    return xp.stack(xs, axis=axis), lambda g: tuple(g[_along(axis, i)] for i in range(len(xs)))


@REGISTRY.op(REAL, kind="split", name="split", dtypes="any", multiple_outputs=True)
def _split(be, x, sections=2, axis=0):
    """Pieces along ``axis``: ``sections`` is a count of equal pieces or a list of sizes.

    Backward concatenates the pieces' gradients once."""
    xp = be.xp
    (axis,) = _axes(axis, _at_least_1d(x, "split"))
    length = x.shape[axis]
    if isinstance(sections, int):
        if sections <= 0 or length % sections:
            raise ValueError(
                f"split: axis {axis} of length {length} does not split into {sections} equal pieces"
            )
        sizes = [length // sections] * sections
    else:
        sizes = list(sections)
        if builtins.sum(sizes) != length:
            raise ValueError(
                f"split: sizes {sizes} do not add up to axis {axis} of length {length}"
            )
    starts = [0]
    for size in sizes[:-1]:
        starts.append(starts[-1] + size)
    pieces = [x[_along(axis, slice(start, start + size))] for start, size in zip(starts, sizes)]
    return pieces, lambda grads: (xp.concat(grads, axis=axis),)


@REGISTRY.op(REAL, kind="unbind", name="unbind", dtypes="any", multiple_outputs=True)
def _unbind(be, x, axis=0):
    """The slices along ``axis``, each without that axis: (T, B, H) -> T x (B, H).

    Backward stacks the slices' gradients once, so walking a sequence step by step
    costs O(T), not the O(T^2) of one full-size zero gradient per indexed step."""
    xp = be.xp
    (axis,) = _axes(axis, _at_least_1d(x, "unbind"))
    pieces = [x[_along(axis, i)] for i in range(x.shape[axis])]
    return pieces, lambda grads: (xp.stack(grads, axis=axis),)


# --- public functions with list arguments --------------------------------------------
def concat(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis: shapes agree except along ``axis``."""
    return _concat(*tensors, axis=axis)


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors of one shape along a new axis."""
    return _stack(*tensors, axis=axis)


def split(x: Tensor, sections: int | Sequence[int] = 2, axis: int = 0) -> list[Tensor]:
    """Pieces of ``x`` along ``axis``: ``sections`` equal ones, or pieces of the sizes
    listed (``split(x, 2)``, ``split(x, [1, 3], axis=1)``)."""
    return _split(x, sections=sections, axis=axis)


def unbind(x: Tensor, axis: int = 0) -> list[Tensor]:
    """The slices of ``x`` along ``axis``, each without it: (T, B, H) -> T x (B, H)."""
    return _unbind(x, axis=axis)


concatenate = concat
transpose = permute


# --- not differentiable -----------------------------------------------------------
def argmax(x: Tensor, axis: int | None = None, keepdims: bool = False) -> Tensor:
    """Index of the maximum along ``axis`` (ties: the first); an int64 tensor."""
    return Tensor._make(x.backend.xp.argmax(x.data, axis=axis, keepdims=keepdims), x.backend)


def _compare(name: str) -> Callable:
    def compare(x: Tensor, y: Any) -> Tensor:
        if isinstance(y, Tensor):
            if y.backend is not x.backend:
                raise _device_mismatch(name.strip("_"), x.backend, y.backend)
            y = y.data
        return Tensor._make(getattr(x.data, name)(y), x.backend)

    return compare


def cast(x: Tensor, dtype: Any) -> Tensor:
    """``x`` as ``dtype``; differentiable to floating dtypes, without history to others."""
    target = x.backend.dtype(dtype)
    if _is_floating(x.backend, target):
        return astype(x, dtype=target)
    with no_grad():
        return astype(x, dtype=target)


# --- Tensor methods and operators ----------------------------------------------------
def _index(x: Tensor, index: Any) -> Tensor:
    if isinstance(index, Tensor):
        return gather(x, index)
    return getitem(x, index=index)


def _reshape_method(x: Tensor, *shape: Any) -> Tensor:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return reshape(x, shape=shape)


def _permute_method(x: Tensor, *axes: Any) -> Tensor:
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    return permute(x, axes=axes or None)


_METHODS = {
    "__add__": add,
    "__radd__": lambda x, y: add(y, x),
    "__sub__": sub,
    "__rsub__": lambda x, y: sub(y, x),
    "__mul__": mul,
    "__rmul__": lambda x, y: mul(y, x),
    "__truediv__": div,
    "__rtruediv__": lambda x, y: div(y, x),
    "__pow__": pow,
    "__rpow__": lambda x, y: pow(y, x),
    "__matmul__": matmul,
    "__rmatmul__": lambda x, y: matmul(y, x),
    "__neg__": neg,
    "__getitem__": _index,
    "__iter__": lambda x: iter(unbind(x, axis=0)),
    "__lt__": _compare("__lt__"),
    "__le__": _compare("__le__"),
    "__gt__": _compare("__gt__"),
    "__ge__": _compare("__ge__"),
    "__eq__": _compare("__eq__"),
    "__ne__": _compare("__ne__"),
    "exp": exp,
    "log": log,
    "sqrt": sqrt,
    "abs": abs,
    "tanh": tanh,
    "sigmoid": sigmoid,
    "softplus": softplus,
    "log_sigmoid": log_sigmoid,
    "relu": relu,
    "clip": lambda x, low=None, high=None: clip(x, low=low, high=high),
    "astype": lambda x, dtype: cast(x, dtype),
    "sum": lambda x, axis=None, keepdims=False: sum(x, axis=axis, keepdims=keepdims),
    "mean": lambda x, axis=None, keepdims=False: mean(x, axis=axis, keepdims=keepdims),
    "max": lambda x, axis=None, keepdims=False: max(x, axis=axis, keepdims=keepdims),
    "logsumexp": lambda x, axis=None, keepdims=False: logsumexp(x, axis=axis, keepdims=keepdims),
    "softmax": lambda x, axis=-1: softmax(x, axis=axis),
    "log_softmax": lambda x, axis=-1: log_softmax(x, axis=axis),
    "argmax": argmax,
    "reshape": _reshape_method,
    "permute": _permute_method,
    "transpose": _permute_method,
    "T": property(lambda x: permute(x)),
    "split": lambda x, sections=2, axis=0: split(x, sections=sections, axis=axis),
    "unbind": lambda x, axis=0: unbind(x, axis=axis),
    "gather": gather,
}

for _name, _method in _METHODS.items():
    setattr(Tensor, _name, _method)
