"""Hypothesis strategies for property-testing ops and models (needs ``hypothesis``).

    from hypothesis import given
    from tinygrad_ee import gradcheck
    from tinygrad_ee.strategies import tensors
    from tinygrad_ee.domains import POSITIVE

    @given(tensors(domain=POSITIVE))
    def test_my_log(x):
        gradcheck(my_log, x)

`op_cases(spec)` draws complete calls for any registered op; the engine's own
test suite uses it to gradcheck every entry of ``tinygrad_ee.REGISTRY``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .domains import REAL, Domain
from .ops import OpSpec
from .tensor import Tensor


def shapes(min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = 4):
    """Array shapes: tuples of ``min_dims``..``max_dims`` sides in ``min_side``..``max_side``."""
    return hnp.array_shapes(
        min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    )


def broadcastable_shapes(count: int = 2, max_dims: int = 3, max_side: int = 4):
    """Tuples of ``count`` shapes that broadcast together (size-1 and missing axes included)."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=count, min_dims=0, max_dims=max_dims, min_side=1, max_side=max_side
    ).map(lambda shapes: shapes.input_shapes)


def _push_away(values: np.ndarray, domain: Domain) -> np.ndarray:
    for point in domain.avoid:
        close = np.abs(values - point) < domain.margin
        values[close] = point + np.where(values[close] >= point, domain.margin, -domain.margin)
    return values


def arrays(shape: tuple[int, ...], domain: Domain = REAL, dtype: str = "float64", high: int = 1):
    """NumPy arrays of ``shape`` with values in ``domain``.

    Index domains draw integers in ``[0, high)``; bool domains draw masks.
    """
    if domain.kind == "bool":
        return hnp.arrays(np.bool_, shape)
    if domain.kind == "index":
        return hnp.arrays(np.int64, shape, elements=st.integers(0, high - 1))
    if domain.distinct:  # a grid of spacing ``margin``: no two values closer than that
        grid = st.integers(int(domain.low / domain.margin), int(domain.high / domain.margin))
        return hnp.arrays(np.int64, shape, elements=grid, unique=True).map(
            lambda ints: (ints * domain.margin).astype(dtype)
        )
    elements = st.floats(domain.low, domain.high, allow_nan=False, allow_infinity=False)
    return hnp.arrays(dtype, shape, elements=elements).map(lambda a: _push_away(a, domain))


def tensors(
    shape: tuple[int, ...] | None = None,
    domain: Domain = REAL,
    dtype: str = "float64",
    device: str = "cpu",
    requires_grad: bool = True,
    high: int = 1,
):
    """Tensors with values in ``domain``; ``shape=None`` draws a shape of 0 to 3 axes.

    Float tensors require gradients unless ``requires_grad=False``; bool and
    index tensors never do.
    """

    @st.composite
    def build(draw):
        chosen = draw(shapes()) if shape is None else shape
        data = draw(arrays(chosen, domain, dtype, high))
        wants_grad = requires_grad and domain.kind == "float"
        return Tensor(data, requires_grad=wants_grad, device=device)

    return build()


@st.composite
def _axis(draw, ndim: int, allow_tuple: bool = True):
    if ndim == 0:
        return None
    single = st.integers(-ndim, ndim - 1)
    several = st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).map(tuple)
    choices = [st.none(), single] + ([several] if allow_tuple else [])
    return draw(st.one_of(*choices))


@st.composite
def op_cases(draw, spec: OpSpec, device: str = "cpu") -> tuple[tuple, dict]:
    """A random valid call of a registered op: ``(tensor inputs, keyword params)``."""
    kind = spec.kind
    domains = spec.domains

    def tensor(shape, domain, high=1):
        return draw(tensors(shape, domain, device=device, high=high))

    if kind == "elementwise":  # any number of inputs, broadcasting together
        drawn = draw(broadcastable_shapes(len(domains)))
        return tuple(tensor(shape, domain) for shape, domain in zip(drawn, domains)), {}
    if kind in ("unary", "clip", "astype"):
        params = {"clip": {"low": -1.0, "high": 1.0}, "astype": {"dtype": "float64"}}
        return (tensor(draw(shapes()), domains[0]),), params.get(kind, {})
    if kind == "binary":
        first, second = draw(broadcastable_shapes(2))
        return (tensor(first, domains[0]), tensor(second, domains[1])), {}
    if kind == "where":
        shapes3 = draw(broadcastable_shapes(3))
        return tuple(tensor(s, d) for s, d in zip(shapes3, domains)), {}
    if kind == "reduce":
        shape = draw(shapes())
        params = {"axis": draw(_axis(len(shape))), "keepdims": draw(st.booleans())}
        return (tensor(shape, domains[0]),), params
    if kind == "softmax":
        shape = draw(shapes(min_dims=1))
        return (tensor(shape, domains[0]),), {
            "axis": draw(st.integers(-len(shape), len(shape) - 1))
        }
    if kind == "matmul":
        n, k, m = draw(st.tuples(*[st.integers(1, 4)] * 3))
        left_vector, right_vector = draw(st.booleans()), draw(st.booleans())
        batch_x, batch_y = draw(broadcastable_shapes(2, max_dims=2, max_side=3))
        x_shape = (k,) if left_vector else batch_x + (n, k)
        y_shape = (k,) if right_vector else batch_y + (k, m)
        return (tensor(x_shape, domains[0]), tensor(y_shape, domains[1])), {}
    if kind == "linear":
        batch = draw(shapes(min_dims=1, max_dims=3))
        k, m = batch[-1], draw(st.integers(1, 4))
        bias_shape = draw(st.sampled_from([(m,), batch[:-1] + (m,)]))  # a bias or a term
        x, weight, bias = (tensor(s, d) for s, d in zip([batch, (k, m), bias_shape], domains))
        return (x, weight, bias), {}
    if kind == "reshape":
        shape = draw(shapes())
        size = int(np.prod(shape))
        target = draw(st.sampled_from([(size,), (-1,), shape[::-1], (1,) + shape, (size, 1)]))
        return (tensor(shape, domains[0]),), {"shape": target}
    if kind == "permute":
        shape = draw(shapes(max_dims=4))
        axes = tuple(draw(st.permutations(range(len(shape)))))
        return (tensor(shape, domains[0]),), {"axes": axes}
    if kind == "getitem":
        shape = draw(shapes(min_dims=1))
        index = draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True))
        return (tensor(shape, domains[0]),), {"index": index}
    if kind == "gather":
        shape = draw(shapes(min_dims=1))
        index_shape = draw(shapes(min_dims=0, max_dims=2))
        indices = tensor(index_shape, domains[1], high=shape[0])
        return (tensor(shape, domains[0]), indices), {}
    if kind in ("concat", "split", "unbind"):
        shape = draw(shapes(min_dims=1))
        axis = draw(st.integers(-len(shape), len(shape) - 1))
        if kind == "unbind":
            return (tensor(shape, domains[0]),), {"axis": axis}
        lengths = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
        if kind == "split":
            shape = shape[: axis % len(shape)] + (sum(lengths),) + shape[axis % len(shape) + 1 :]
            equal = len(set(lengths)) == 1  # then the count of pieces works too
            sections = draw(st.sampled_from([lengths, len(lengths)])) if equal else lengths
            return (tensor(shape, domains[0]),), {"sections": sections, "axis": axis}
        pieces = tuple(
            tensor(shape[: axis % len(shape)] + (n,) + shape[axis % len(shape) + 1 :], domains[0])
            for n in lengths
        )
        return pieces, {"axis": axis}
    if kind == "dropout":
        key = tensor((), domains[1], high=2**31)
        p = draw(st.sampled_from([0.0, 0.25, 0.5, 0.9]))
        return (tensor(draw(shapes()), domains[0]), key), {"p": p}
    if kind == "bernoulli_kl":
        rho = draw(st.floats(0.01, 0.99))
        return (tensor(draw(shapes()), domains[0]),), {"rho": rho}
    if kind == "cross_entropy":
        count, classes = draw(st.integers(1, 4)), draw(st.integers(1, 5))
        targets = tensor((count,), domains[1], high=classes)
        return (tensor((count, classes), domains[0]), targets), {}
    if kind == "stack":
        shape = draw(shapes())
        count = draw(st.integers(1, 3))
        axis = draw(st.integers(-len(shape) - 1, len(shape)))
        return tuple(tensor(shape, domains[0]) for _ in range(count)), {"axis": axis}
    raise ValueError(f"op_cases: no case builder for kind {kind!r} (op {spec.name!r})")


KINDS: frozenset[str] = frozenset(
    "elementwise unary clip astype binary where reduce softmax matmul linear reshape permute "
    "getitem gather concat split unbind stack cross_entropy bernoulli_kl dropout".split()
)
"""The op kinds `op_cases` knows how to call."""


def describe(args: tuple, params: dict[str, Any]) -> str:
    """A short text of a drawn case, for failure messages."""
    shapes_text = ", ".join(str(a.shape) if isinstance(a, Tensor) else repr(a) for a in args)
    return f"inputs {shapes_text} params {params}"
