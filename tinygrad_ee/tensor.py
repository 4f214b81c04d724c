"""`Tensor` and reverse-mode autograd: recording ops, and walking the graph back.

An op is a forward function ``forward(backend, *arrays, **params)`` that returns
``(out_array, backward)``, where ``backward(grad_out)`` returns one gradient per
input (or None for inputs that have none). `apply` runs the forward on the
tensors' arrays and, when gradients are wanted, records ``(name, backward,
inputs)`` on the result. `Tensor.backward` visits recorded tensors in reverse
topological order, calls each ``backward`` once, sums broadcast gradients back
to each input's shape, and accumulates into the leaves' ``.grad``.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .backend import Backend, DeviceError, get_backend

_grad_enabled = True
_next_seq = itertools.count().__next__


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Run ops without recording them: results never require gradients."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled() -> bool:
    return _grad_enabled


class Tensor:
    """An n-dimensional array on one device, with the op that made it.

    ``Tensor(data, requires_grad=False, device=None, dtype=None)``: ``data`` is a
    scalar, a nested list, an array or a Tensor (whose data is copied). ``device``
    defaults to the data's device for a Tensor, else "cpu". With ``dtype=None`` an
    array keeps its dtype and Python numbers become float32 (floats) or int64 (ints).

    ``==`` and the other comparisons are elementwise (they return bool tensors), so
    use identity (``is``, ``id``) to find a tensor in a collection.

    Reductions follow NumPy's names everywhere: ``axis`` (int, tuple or None for
    all axes) and ``keepdims``.
    """

    __slots__ = ("data", "grad", "requires_grad", "backend", "_ctx", "_seq", "__weakref__")
    # _ctx is None for leaves and (op name, backward, inputs) for recorded results;
    # _seq numbers recorded results in creation order (a ready topological order).

    __array_priority__ = 1000  # NumPy defers to Tensor's reflected operators
    __hash__ = object.__hash__  # == is elementwise, identity stays the hash

    def __init__(
        self,
        data: Any,
        requires_grad: bool = False,
        device: str | Backend | None = None,
        dtype: Any = None,
    ) -> None:
        if isinstance(data, Tensor):
            backend = get_backend(data.backend if device is None else device)
            data = data.numpy()
        else:
            backend = get_backend("cpu" if device is None else device)
        dtype = backend.dtype(dtype)
        if dtype is None and not hasattr(data, "dtype"):
            array = backend.asarray(data)
            if array.dtype == backend.xp.float64:  # Python floats default to float32
                array = backend.xp.astype(array, backend.xp.float32)
        else:
            array = backend.asarray(data, dtype=dtype)
        self.data = array
        self.backend = backend
        self.grad: Tensor | None = None
        self.requires_grad = False
        self._ctx: tuple | None = None
        if requires_grad:
            self.requires_grad_()

    @staticmethod
    def _make(array: Any, backend: Backend) -> Tensor:
        """Wrap an array already on ``backend`` (no copy, no checks: the hot path)."""
        tensor = object.__new__(Tensor)
        tensor.data = array
        tensor.backend = backend
        tensor.grad = None
        tensor.requires_grad = False
        tensor._ctx = None
        return tensor

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Mark a leaf as needing ``.grad`` (only floating tensors can)."""
        if requires_grad and not _is_floating(self.backend, self.data.dtype):
            raise TypeError(
                f"only floating-point tensors can require gradients, not {self.data.dtype}"
            )
        self.requires_grad = requires_grad
        return self

    # --- what it is ---------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return math.prod(self.data.shape)

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    @property
    def device(self) -> str:
        return self.backend.device

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __bool__(self) -> bool:
        if self.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous")
        return bool(self.item())

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.numpy()!r}, device={self.device!r}{grad})"

    # --- copies -------------------------------------------------------------
    def numpy(self) -> Any:
        """A NumPy copy of the data, on the host."""
        return self.backend.to_host(self.data)

    def item(self) -> float | int | bool:
        """The value of a one-element tensor as a Python number."""
        if self.size != 1:
            raise ValueError(f"item() needs a one-element tensor, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def detach(self) -> Tensor:
        """The same data, without history and without requiring gradients."""
        return Tensor._make(self.data, self.backend)

    def to(self, device: str | Backend) -> Tensor:
        """This tensor on ``device``: ``self`` when it is there already, else a copy
        that is a new leaf (gradients do not cross devices)."""
        backend = get_backend(device)
        if backend is self.backend:
            return self
        moved = Tensor._make(backend.asarray(self.numpy()), backend)
        moved.requires_grad = self.requires_grad
        return moved

    # --- gradients ----------------------------------------------------------
    def backward(self, grad: Tensor | Any = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        ``grad`` (same shape as ``self``) seeds the walk; it may be omitted for a
        one-element tensor. The graph's saved arrays are released afterwards
        unless ``retain_graph=True``.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: no input had "
                "requires_grad=True, or it was computed under no_grad()"
            )
        if grad is None:
            if self.size != 1:
                raise ValueError(
                    f"backward() on a tensor of shape {self.shape} needs a gradient "
                    "of that shape (only one-element tensors default to 1)"
                )
            seed = self.backend.xp.ones_like(self.data)
        else:
            if isinstance(grad, Tensor):
                if grad.backend is not self.backend:
                    raise _device_mismatch("backward", self.backend, grad.backend)
                seed = grad.data
            else:
                seed = self.backend.asarray(grad, dtype=self.data.dtype)
            if tuple(seed.shape) != self.shape:
                raise ValueError(
                    f"backward() gradient has shape {tuple(seed.shape)}, "
                    f"expected {self.shape} (the tensor's shape)"
                )
        _run_backward(self, seed, retain_graph)

    # Operators and methods (``+``, ``@``, ``.sum()``, ...) are attached in ops.py.


def zeros(
    shape: int | tuple[int, ...], device: str | Backend = "cpu", dtype: Any = "float32"
) -> Tensor:
    """A tensor of zeros (no history)."""
    return _filled("zeros", shape, device, dtype)


def ones(
    shape: int | tuple[int, ...], device: str | Backend = "cpu", dtype: Any = "float32"
) -> Tensor:
    """A tensor of ones (no history)."""
    return _filled("ones", shape, device, dtype)


def _filled(kind: str, shape: int | tuple[int, ...], device: str | Backend, dtype: Any) -> Tensor:
    backend = get_backend(device)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return Tensor._make(getattr(backend.xp, kind)(shape, dtype=backend.dtype(dtype)), backend)


def _is_floating(backend: Backend, dtype: Any) -> bool:
    xp = backend.xp
    return dtype == xp.float32 or dtype == xp.float64 or str(dtype).endswith("float16")


def _device_mismatch(name: str, first: Backend, second: Backend) -> DeviceError:
    return DeviceError(
        f"{name}: tensors on different devices, {first.device} and {second.device}; "
        "move one with .to(device)"
    )


def apply(forward: Callable, name: str, inputs: Sequence[Any], params: dict) -> Tensor:
    """Run ``forward`` on the inputs' arrays and record it if gradients are wanted.

    ``inputs`` are Tensors or Python numbers (constants, passed through as is).
    """
    backend = None
    requires_grad = False
    arrays = []
    for x in inputs:
        if isinstance(x, Tensor):
            if backend is None:
                backend = x.backend
            elif x.backend is not backend:
                raise _device_mismatch(name, backend, x.backend)
            arrays.append(x.data)
            requires_grad = requires_grad or x.requires_grad
        else:
            arrays.append(x)
    if backend is None:
        raise TypeError(f"{name}: at least one input must be a Tensor")
    out, backward = forward(backend, *arrays, **params)
    result = Tensor._make(out, backend)
    if requires_grad and _grad_enabled:
        result.requires_grad = True
        result._ctx = (name, backward, inputs)
        result._seq = _next_seq()
    return result


def apply_multi(forward: Callable, name: str, x: Tensor, params: dict) -> list[Tensor]:
    """Like `apply` for an op with one input and several outputs (split, unbind).

    ``forward`` returns ``(out_arrays, backward)`` and ``backward`` receives one
    gradient per output, None for outputs that got none. The outputs hang off a
    hidden "hub" tensor, so backward runs once and assembles the input's
    gradient in one go, however many outputs were used.
    """
    pieces, backward = forward(x.backend, x.data, **params)
    outputs = [Tensor._make(piece, x.backend) for piece in pieces]
    if x.requires_grad and _grad_enabled:
        hub = Tensor._make(None, x.backend)
        hub.requires_grad = True
        count = len(pieces)
        hub._ctx = (name, lambda grads: (backward([grads.get(i) for i in range(count)]),), (x,))
        hub._seq = _next_seq()
        for i, output in enumerate(outputs):
            output.requires_grad = True
            output._ctx = (name, _to_hub_slot(i), (hub,))
            output._seq = _next_seq()
    return outputs


def _to_hub_slot(index: int) -> Callable:
    # A hub's pending gradient is a dict {output index: gradient}.
    return lambda grad: ({index: grad},)


def _graph_freed(_grad: Any) -> None:
    raise RuntimeError(
        "backward() through a graph that was already freed: pass "
        "backward(retain_graph=True) the first time to backpropagate twice"
    )


_FREED = ("freed", _graph_freed, ())
_by_creation = operator.attrgetter("_seq")


def _topological_order(root: Tensor) -> list[Tensor]:
    """Recorded tensors reachable from ``root``, each after every tensor using it.

    A tensor is always created after its inputs, so newest-first creation order is
    a topological order: collect the reachable tensors (iteratively: a recurrence
    of thousands of steps must not hit Python's recursion limit), then sort.
    """
    nodes = [root]
    seen = {id(root)}
    for node in nodes:  # grows while we walk it
        for parent in node._ctx[2]:
            if isinstance(parent, Tensor) and parent._ctx is not None and id(parent) not in seen:
                seen.add(id(parent))
                nodes.append(parent)
    nodes.sort(key=_by_creation, reverse=True)
    return nodes


def _sum_to_shape(xp: Any, grad: Any, shape: tuple[int, ...]) -> Any:
    """Sum a broadcast gradient back down to an input's ``shape``."""
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1
    )
    if axes:
        grad = xp.sum(grad, axis=axes)
    return xp.reshape(grad, shape)


def _run_backward(root: Tensor, seed: Any, retain_graph: bool) -> None:
    if root._ctx is None:  # backward() on a leaf
        _accumulate_leaf(root, seed)
        return
    pending = {id(root): seed}  # gradients of recorded tensors not yet propagated
    for node in _topological_order(root):
        grad = pending.pop(id(node), None)
        if grad is None:
            continue
        name, backward, inputs = node._ctx
        if not retain_graph:
            node._ctx = _FREED
        input_grads = backward(grad)
        for x, x_grad in zip(inputs, input_grads):
            if x_grad is None or not isinstance(x, Tensor) or not x.requires_grad:
                continue
            if x.data is not None and x_grad.shape != x.data.shape:
                x_grad = _sum_to_shape(x.backend.xp, x_grad, x.data.shape)
            if x._ctx is None:
                _accumulate_leaf(x, x_grad)
                continue
            previous = pending.get(id(x))
            if previous is None:
                pending[id(x)] = x_grad
            elif type(x_grad) is dict:  # a hub collecting its outputs' gradients
                for index, piece in x_grad.items():
                    previous[index] = previous[index] + piece if index in previous else piece
            else:
                pending[id(x)] = previous + x_grad


def _accumulate_leaf(leaf: Tensor, grad: Any) -> None:
    # Never in place: a gradient array may be shared with other tensors' grads.
    if grad.dtype != leaf.data.dtype:
        grad = leaf.backend.xp.astype(grad, leaf.data.dtype)
    if leaf.grad is None:
        leaf.grad = Tensor._make(grad, leaf.backend)
    else:
        leaf.grad.data = leaf.grad.data + grad
