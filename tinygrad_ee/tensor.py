"""`Tensor` and reverse-mode autograd: recording ops, and walking the graph back.

An op is a forward function ``forward(backend, *arrays, **params)`` that returns
``(out_array, backward)``, where ``backward(grad_out)`` returns one gradient per
input (or None for inputs that have none). `apply` runs the forward on the
tensors' arrays and, when gradients are wanted, records ``(name, backward,
inputs, site)`` on the result (``site``: where user code made it, in anomaly
mode). `Tensor.backward` visits recorded tensors in reverse topological order,
calls each ``backward`` once, sums broadcast gradients back to each input's shape,
and accumulates into the leaves' ``.grad``.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import numbers
import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from . import anomaly
from .backend import Backend, DeviceError, describe_arrays, dtype_name, get_backend, host_array

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
    scalar, a nested list, an array or a Tensor. It is always copied, like
    ``torch.tensor`` (not ``torch.from_numpy``): the tensor never shares memory with the
    array it was made from, so changing one never changes the other. ``device``
    defaults to the data's device for a Tensor, else "cpu". With ``dtype=None`` an
    array keeps its dtype and Python numbers become float32 (floats) or int64 (ints).

    ``==`` and the other comparisons are elementwise (they return bool tensors), so
    use identity (``is``, ``id``) to find a tensor in a collection.

    Reductions follow NumPy's names everywhere: ``axis`` (int, tuple or None for
    all axes) and ``keepdims``.
    """

    __slots__ = ("data", "grad", "requires_grad", "backend", "_ctx", "_seq", "__weakref__")
    # _ctx is None for leaves and (op name, backward, inputs, site) for recorded
    # results, site being where user code made it (anomaly mode only, else None);
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
        given = data
        if isinstance(data, Tensor):
            backend = get_backend(data.backend if device is None else device)
            data = data.numpy()
        else:
            backend = get_backend("cpu" if device is None else device)
        dtype = backend.dtype(dtype)
        data = host_array(data, float32=dtype is None)
        # The caller's array is copied (one made here, from a list or a Tensor, is not): a
        # tensor never shares memory with it, so an in-place update never shows in both.
        array = backend.asarray(data, dtype=dtype, copy=True if data is given else None)
        if array.dtype not in backend.kinds:
            raise TypeError(
                f"Tensor: data must be numbers or bools, got dtype {dtype_name(array.dtype)}"
            )
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
                if seed.dtype != self.data.dtype:
                    raise TypeError(
                        f"backward() gradient has dtype {dtype_name(seed.dtype)}, expected "
                        f"{dtype_name(self.data.dtype)} (the tensor's dtype)"
                    )
            else:
                seed = self.backend.asarray(host_array(grad, float32=False), copy=True)
                if self.backend.kinds.get(seed.dtype) != "float":
                    raise TypeError(
                        f"backward() gradient must hold floats, got dtype {dtype_name(seed.dtype)}"
                    )
                if seed.dtype != self.data.dtype:
                    seed = self.backend.xp.astype(seed, self.data.dtype)
            if tuple(seed.shape) != self.shape:
                raise ValueError(
                    f"backward() gradient has shape {tuple(seed.shape)}, "
                    f"expected {self.shape} (the tensor's shape)"
                )
        _run_backward(self, seed, retain_graph)

    # Operators and methods (``+``, ``@``, ``.sum()``, ...) are attached in ops.py.


# --- how a compiled step sees tensors -------------------------------------------------------
# A trace (compiler/trace.py) must see every read and write of .data and .grad, from any
# code, at no cost to eager code (a property would cost each read a Python call). So
# for the length of a trace, and only then, `watched` puts its descriptors in the place
# of these two slots on the class; DATA and GRAD, the slots' own, reach the fields.
DATA, GRAD = Tensor.__dict__["data"], Tensor.__dict__["grad"]


@contextlib.contextmanager
def watched(data: Any, grad: Any) -> Iterator[None]:
    """Within the block, ``tensor.data`` and ``tensor.grad`` of every tensor go through
    the descriptors ``data`` and ``grad`` (objects with ``__get__`` and ``__set__``)."""
    Tensor.data, Tensor.grad = data, grad
    try:
        yield
    finally:
        Tensor.data, Tensor.grad = DATA, GRAD


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
    return backend.kinds.get(backend.dtype(dtype)) == "float"


def _device_mismatch(name: str, first: Backend, second: Backend) -> DeviceError:
    return DeviceError(
        f"{name}: tensors on different devices, {first.device} and {second.device}; "
        "move one with .to(device)"
    )


def apply(
    forward: Callable, name: str, inputs: Sequence[Any], params: dict, accepts: Sequence[Any]
) -> Tensor:
    """Run ``forward`` on the inputs' arrays and record it if gradients are wanted.

    ``inputs`` are Tensors or Python numbers (constants, passed through as is).
    ``accepts[i]`` is the set of dtype kinds ("float", "int", "bool") input i may
    hold; the float-capable inputs must share one dtype.
    """
    backend, arrays, requires_grad = _input_arrays(name, inputs, accepts)
    out, backward = _run_forward(forward, name, arrays, params, backend)
    if type(out) is tuple or type(out) is list:
        raise TypeError(
            f"{name}: its forward returned {len(out)} outputs; an op with several outputs "
            "is declared with multiple_outputs=True"
        )
    site = None
    if anomaly.enabled:
        site = anomaly.creation_site()
        anomaly.check_forward(backend.xp, name, [out], arrays, site)
    result = Tensor._make(out, backend)
    if requires_grad and _grad_enabled:
        result.requires_grad = True
        result._ctx = (name, backward, inputs, site)
        result._seq = _next_seq()
    return result


def _input_arrays(
    name: str, inputs: Sequence[Any], accepts: Sequence[Any]
) -> tuple[Backend, list, bool]:
    """The inputs' backend, their arrays (constants as Python numbers) and whether any
    requires a gradient, after checking devices and dtypes (see `apply`)."""
    if len(inputs) != len(accepts):
        raise TypeError(
            f"{name}: takes {len(accepts)} tensor inputs, passed by position; got {len(inputs)}"
        )
    backend = None
    requires_grad = False
    shared_dtype = shared_allowed = None
    float_constant = False
    arrays = []
    for x, allowed in zip(inputs, accepts):
        if isinstance(x, Tensor):
            data = x.data
            dtype = data.dtype
            if backend is None:
                backend = x.backend
                kinds = backend.kinds
            elif x.backend is not backend:
                raise _device_mismatch(name, backend, x.backend)
            # Fast path: the same dtype object under the same rule as the input before
            # (x * y of one dtype) was checked already.
            if dtype is not shared_dtype or allowed is not shared_allowed:
                if kinds.get(dtype) not in allowed:
                    raise _wrong_dtype(name, len(arrays), dtype, allowed)
                if "float" in allowed:
                    if shared_dtype is None:
                        shared_dtype, shared_allowed = dtype, allowed
                    elif dtype != shared_dtype:
                        raise _mixed_dtypes(name, shared_dtype, dtype)
            if x.requires_grad:
                requires_grad = True
            arrays.append(data)
        else:  # a constant: Python int or float (NumPy scalars, bools, fractions become one)
            if type(x) is not float and type(x) is not int:
                if not isinstance(x, numbers.Real):
                    raise _not_a_tensor(name, x)
                x = int(x) if isinstance(x, numbers.Integral) else float(x)
            float_constant = float_constant or type(x) is float
            arrays.append(x)
    if backend is None:
        raise TypeError(f"{name}: at least one input must be a Tensor")
    if float_constant and shared_dtype is not None and kinds.get(shared_dtype) == "int":
        raise TypeError(
            f"{name}: a float constant with an integer tensor ({dtype_name(shared_dtype)}) "
            "would promote it; convert the tensor with .astype() first"
        )
    return backend, arrays, requires_grad


def _run_forward(
    forward: Callable, name: str, arrays: list, params: dict, backend: Backend
) -> tuple[Any, Callable]:
    try:
        return forward(backend, *arrays, **params)
    except _LIBRARY_ERRORS as error:
        raise _explained(error, name, arrays) from error


# What an array library raises for a bad call; re-raised naming the op (most specific
# first: NumPy's AxisError is both an IndexError and a ValueError).
_LIBRARY_ERRORS = (IndexError, TypeError, ValueError, OverflowError)


def _wrong_dtype(name: str, index: int, dtype: Any, allowed: frozenset) -> TypeError:
    if allowed == {"int"}:
        return TypeError(f"{name}: indices must be integers, got dtype {dtype_name(dtype)}")
    wanted = " or ".join(sorted(allowed))
    hint = "; convert it with .astype('float32')" if "float" in allowed else ""
    return TypeError(
        f"{name}: input {index} must hold {wanted} values, got dtype {dtype_name(dtype)}{hint}"
    )


def _mixed_dtypes(name: str, first: Any, second: Any) -> TypeError:
    return TypeError(
        f"{name}: inputs have different dtypes, {dtype_name(first)} and "
        f"{dtype_name(second)}; convert one with .astype() (no silent promotion)"
    )


def _not_a_tensor(name: str, value: Any) -> TypeError:
    return TypeError(
        f"{name}: inputs must be Tensors or Python numbers, got {type(value).__name__}"
        + ("; wrap arrays in a Tensor" if hasattr(value, "shape") else "")
    )


def _explained(error: Exception, name: str, arrays: Sequence[Any]) -> Exception:
    """An array library's error, re-raised with the op's name and its inputs' shapes."""
    message = str(error).removeprefix(f"{name}: ")  # the op's own checks name it already
    kind = next(k for k in _LIBRARY_ERRORS if isinstance(error, k))
    return kind(f"{name}: {message} (inputs: {describe_arrays(arrays)})")


def apply_multi(
    forward: Callable, name: str, inputs: Sequence[Any], params: dict, accepts: Sequence[Any]
) -> list[Tensor]:
    """Like `apply` for an op with several outputs (split, unbind, a user's LSTM cell).

    ``forward`` returns ``(out_arrays, backward)`` and ``backward`` receives one
    gradient per output, zeros for outputs that got none. The outputs hang off a
    hidden "hub" tensor, so backward runs once and assembles the inputs' gradients
    in one go, however many outputs were used.
    """
    backend, arrays, requires_grad = _input_arrays(name, inputs, accepts)
    pieces, backward = _run_forward(forward, name, arrays, params, backend)
    if not isinstance(pieces, (list, tuple)):
        raise TypeError(
            f"{name}: an op with multiple_outputs=True returns (a list of arrays, backward), "
            f"got {type(pieces).__name__} as its outputs"
        )
    site = None
    if anomaly.enabled:
        site = anomaly.creation_site()
        anomaly.check_forward(backend.xp, name, pieces, arrays, site)
    outputs = [Tensor._make(piece, backend) for piece in pieces]
    if requires_grad and _grad_enabled:
        hub = Tensor._make(None, backend)
        hub.requires_grad = True
        hub._ctx = (name, _from_hub(backend.xp, backward, pieces), inputs, site)
        hub._seq = _next_seq()
        for i, output in enumerate(outputs):
            output.requires_grad = True
            output._ctx = (name, _to_hub_slot(i), (hub,), site)
            output._seq = _next_seq()
    return outputs


def _from_hub(xp: Any, backward: Callable, pieces: Sequence[Any]) -> Callable:
    # A hub's gradient is a dict {output index: gradient}; unused outputs get zeros.
    return lambda grads: backward(
        [grads[i] if i in grads else xp.zeros_like(piece) for i, piece in enumerate(pieces)]
    )


def _to_hub_slot(index: int) -> Callable:
    # A hub's pending gradient is a dict {output index: gradient}.
    return lambda grad: ({index: grad},)


def _graph_freed(_grad: Any) -> None:
    raise RuntimeError(
        "backward() through a graph that was already freed: pass "
        "backward(retain_graph=True) the first time to backpropagate twice"
    )


_FREED = ("freed", _graph_freed, (), None)
_by_creation = operator.attrgetter("_seq")


def _topological_order(root: Tensor) -> list[Tensor]:
    """Recorded tensors reachable from ``root``, each after every tensor using it.

    A tensor is always created after its inputs, so newest-first creation order is
    a topological order: collect the reachable tensors (iteratively: a recurrence
    of thousands of steps must not hit Python's recursion limit), then sort.
    """
    nodes = [root]
    seen = {root}  # tensors hash by identity, so sets and dicts of them are safe
    for node in nodes:  # grows while we walk it
        for parent in node._ctx[2]:
            if isinstance(parent, Tensor) and parent._ctx is not None and parent not in seen:
                seen.add(parent)
                nodes.append(parent)
    nodes.sort(key=_by_creation, reverse=True)
    return nodes


def _sum_to_shape(xp: Any, grad: Any, shape: tuple[int, ...]) -> Any | None:
    """Sum a broadcast gradient back down to an input's ``shape``; None when ``shape``
    does not broadcast to the gradient's (a backward that returned a wrong shape)."""
    extra = grad.ndim - len(shape)
    if extra < 0 or any(n not in (1, m) for n, m in zip(shape, grad.shape[extra:])):
        return None
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1
    )
    if axes:
        grad = xp.sum(grad, axis=axes)
    return xp.reshape(grad, shape)


def _run_backward(root: Tensor, seed: Any, retain_graph: bool) -> None:
    checking = anomaly.enabled
    if checking:
        anomaly.check_seed(root.backend.xp, seed)
    # owned: tensor -> a gradient sum this walk allocated for it. Only those are added
    # into in place; any other array may also be another tensor's gradient (add's
    # backward hands the same array to both inputs) or a .grad the user holds.
    owned: dict[Tensor, Any] = {}
    if root._ctx is None:  # backward() on a leaf
        _accumulate_leaf(root, seed, owned)
        return
    root.backend.clear_backward_cache()
    try:
        _propagate(root, seed, retain_graph, checking, owned)
    finally:
        root.backend.clear_backward_cache()


def _propagate(
    root: Tensor, seed: Any, retain_graph: bool, checking: bool, owned: dict[Tensor, Any]
) -> None:
    """Send ``seed`` back from ``root`` through every recorded op, newest first."""
    pending = {root: seed}  # gradients of recorded tensors not yet propagated
    for node in _topological_order(root):
        grad = pending.pop(node, None)
        if grad is None:
            continue
        if owned:
            owned.pop(node, None)
        name, backward, inputs, site = node._ctx
        if not retain_graph:
            node._ctx = _FREED
        input_grads = backward(grad)
        if type(input_grads) is not tuple or len(input_grads) != len(inputs):
            input_grads = _gradient_tuple(name, input_grads, inputs)
        if checking:
            where = site or "an unknown place (it was recorded outside detect_anomaly)"
            anomaly.check_backward(node.backend.xp, name, input_grads, grad, inputs, where)
        for x, x_grad in zip(inputs, input_grads):
            if x_grad is None or not isinstance(x, Tensor) or not x.requires_grad:
                continue
            data = x.data
            if data is not None and x_grad.shape != data.shape:
                shape = x_grad.shape
                x_grad = _sum_to_shape(x.backend.xp, x_grad, data.shape)
                if x_grad is None:
                    raise _wrong_gradient_shape(name, inputs, x, shape)
            if x._ctx is None:
                _accumulate_leaf(x, x_grad, owned)
                continue
            previous = pending.get(x)
            if previous is None:
                pending[x] = x_grad
            elif type(x_grad) is dict:  # a hub collecting its outputs' gradients
                for index, piece in x_grad.items():
                    previous[index] = previous[index] + piece if index in previous else piece
            elif owned.get(x) is previous and previous.dtype == x_grad.dtype:
                previous += x_grad  # a 0-d NumPy sum is an immutable scalar: += rebinds,
                pending[x] = owned[x] = previous  # so store the result back either way
            else:
                pending[x] = owned[x] = previous + x_grad


def _gradient_tuple(name: str, grads: Any, inputs: Sequence[Any]) -> tuple:
    """A backward's result as a tuple of one gradient per input, or a TypeError: a bare
    array would be zipped with the inputs row by row."""
    if isinstance(grads, list) and len(grads) == len(inputs):
        return tuple(grads)
    got = f"{len(grads)} gradients" if isinstance(grads, (tuple, list)) else type(grads).__name__
    raise TypeError(
        f"the backward of {name} returned {got} for its {len(inputs)} inputs; it must "
        "return a tuple of one gradient per input (None for an input without one)"
    )


def _wrong_gradient_shape(name: str, inputs: Sequence[Any], x: Tensor, shape: Any) -> ValueError:
    index = next(i for i, y in enumerate(inputs) if y is x)
    return ValueError(
        f"the backward of {name} returned a gradient of shape {tuple(shape)} for its input "
        f"{index} of shape {x.shape}: neither that shape nor one it broadcasts to (the "
        "engine sums broadcast axes back; a reduction the op made itself is the op's to undo)"
    )


def _accumulate_leaf(leaf: Tensor, grad: Any, owned: dict[Tensor, Any]) -> None:
    if grad.dtype != leaf.data.dtype:
        grad = leaf.backend.xp.astype(grad, leaf.data.dtype)
    if leaf.grad is None:
        leaf.grad = Tensor._make(grad, leaf.backend)
    elif owned.get(leaf) is leaf.grad.data:
        leaf.grad.data += grad
    else:
        leaf.grad.data = owned[leaf] = leaf.grad.data + grad
