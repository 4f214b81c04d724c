"""Array backends: the only module that knows which array library holds tensor data.

A backend owns one Array API namespace (``backend.xp``) and the few things the
standard does not cover: random numbers, scatter-add, copies to and from the host,
and synchronising a device for timing. Everything else in the engine calls
``backend.xp.<standard function>`` and so runs unchanged on every backend.

Device strings:

========================  ===============================================
``"cpu"``                 NumPy
``"cuda"``, ``"cuda:N"``  CuPy on GPU ``N`` (default 0); needs the ``cuda`` extra
``"strict"``              array-api-strict (tests: proves portability)
``"strict:device1"``      array-api-strict on one of its fake devices
========================  ===============================================
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
import operator
import os
import types
import weakref
from typing import Any

import numpy as np

Array = Any  # an array of whichever library the backend drives

CUDA_INSTALL_HINT = (
    "pip install 'tinygrad-ee[cuda]' (CuPy for CUDA 12) or 'tinygrad-ee[cuda13]' (CUDA 13)"
)


class DeviceError(RuntimeError):
    """A device string that cannot be served, or tensors on different devices."""


def dtype_name(dtype: Any) -> str:
    """A dtype's plain name on any backend: array_api_strict.float32 -> "float32"."""
    return str(dtype).rsplit(".", 1)[-1]


def describe_arrays(arrays: Any) -> str:
    """ "(2, 3) float32, 0.5": an op's inputs for error messages (numbers as they are)."""
    return ", ".join(
        f"{tuple(a.shape)} {dtype_name(a.dtype)}" if hasattr(a, "shape") else repr(a)
        for a in arrays
    )


def host_array(data: Any, float32: bool = True) -> Any:
    """Data for a Tensor, checked: Python numbers or (nested) lists become a NumPy array
    (Python floats as float32 when ``float32``); NumPy arrays must hold numbers or bools;
    other arrays (a device's) pass through. Ragged lists raise ValueError, anything that
    is not numbers TypeError."""
    if isinstance(data, np.ndarray):
        if data.dtype.kind not in "biuf":
            raise TypeError(f"Tensor: data must be numbers or bools, got dtype {data.dtype}")
        return data
    if hasattr(data, "dtype"):
        return data
    try:
        array = np.asarray(data)
    except ValueError as error:
        raise ValueError(f"Tensor: data is not a rectangular array of numbers: {error}") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"Tensor: data must be numbers or bools, got {type(data).__name__} "
            f"holding {array.dtype}"
        )
    return array.astype(np.float32) if float32 and array.dtype == np.float64 else array


def host_copy(array: Any) -> np.ndarray:
    """A NumPy copy of an array of any backend (for error messages: it works while a
    compiled step is being traced, when backends refuse `Backend.to_host`)."""
    if isinstance(array, (np.ndarray, np.generic)):
        return np.array(array)
    if hasattr(array, "get"):  # CuPy
        return array.get()
    return np.from_dlpack(array).copy()


class Backend:
    """One array library on one device.

    Subclasses set ``xp`` (an Array API namespace) and ``device`` (the device
    string users pass), and may override the non-standard helpers below.
    """

    xp: Any
    device: str
    # Methods written with the library itself rather than ``xp``: a compiled step
    # records each call as one instruction (tracing.py).
    RECORDED_METHODS: tuple[str, ...] = ("scatter_add", "transpose_copy")

    def __init__(self) -> None:
        self._rng = np.random.default_rng(0)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.device}>"

    # --- moving data -------------------------------------------------------
    def asarray(self, data: Any, dtype: Any = None, copy: bool | None = None) -> Array:
        """Array on this device from host data (list, scalar, NumPy array). ``copy``: as
        the standard's ``asarray`` (True: always a new array, None: when needed)."""
        return self.xp.asarray(data, dtype=dtype, copy=copy)

    def to_host(self, array: Array) -> np.ndarray:
        """A NumPy copy of ``array``."""
        return np.array(array, copy=True)

    def dtype(self, dtype: Any) -> Any:
        """This namespace's dtype for a name ("float32", "int64", ...); a dtype object
        (or None) is returned as it is."""
        if not isinstance(dtype, str):
            return dtype
        try:
            return getattr(self.xp, dtype)
        except AttributeError:
            raise TypeError(f"unknown dtype {dtype!r} on device {self.device}") from None

    @functools.cached_property
    def kinds(self) -> dict[Any, str]:
        """ "float", "int" or "bool" for each dtype of this namespace (ops check inputs)."""
        names = {
            "float": ("float16", "float32", "float64"),
            "int": ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"),
            "bool": ("bool",),
        }
        # Keyed by the namespace's dtype names and by the dtype objects arrays carry:
        # NumPy's np.float32 is a scalar type, not the np.dtype that .dtype returns.
        xp = self.xp
        kinds = {}
        for kind, dtypes in names.items():
            for name in dtypes:
                if getattr(xp, name, None) is not None:
                    kinds[getattr(xp, name)] = kind
                    kinds[xp.zeros((0,), dtype=getattr(xp, name)).dtype] = kind
        return kinds

    def synchronize(self) -> None:
        """Wait until queued work has finished (a no-op on the CPU)."""

    def memory_bytes(self) -> int | None:
        """The size of the memory this device's arrays live in: the machine's RAM on the
        host (None where it cannot be found out), the GPU's own on CUDA."""
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):  # not POSIX
            return None

    # --- backward passes ---------------------------------------------------
    def transposed_operand(self, matrix: Array) -> Array:
        """``matrix`` with its last two axes swapped, as the right operand of a product
        in a backward pass (g @ W^T). A backend may hand back a contiguous copy that it
        keeps until `clear_backward_cache`."""
        return self.xp.matrix_transpose(matrix)

    def clear_backward_cache(self) -> None:
        """Called as a backward pass starts and ends: drop what `transposed_operand` kept
        (the arrays may change between passes)."""

    # --- compiled steps: what a replay may do with each recorded function --------
    # Functions whose result never shares memory with their arguments; any other may
    # return a view, so its arguments' buffers must outlive its result.
    FRESH = (
        "add subtract multiply divide negative positive power exp log log1p expm1 sqrt "
        "tanh abs sign maximum minimum greater greater_equal less less_equal equal "
        "not_equal bitwise_and bitwise_or logical_not isfinite isnan isinf where "
        "matmul sum max min mean prod all any argmax concat stack take take_along_axis "
        "zeros ones empty full zeros_like ones_like full_like arange clip square"
    ).split()

    @functools.cached_property
    def fresh_functions(self) -> frozenset:
        functions = {getattr(self.xp, name, None) for name in self.FRESH}
        functions |= set(_ARITHMETIC) | {_setitem(), self.transpose_copy}
        return frozenset(f for f in functions if f is not None)

    supports_out = False  # whether a replay may write results into given arrays
    # A compiled step's elementwise chains: fuse(python_function) -> one kernel doing
    # the same (None: not fused); fusable(fn): whether fn may be part of such a chain.
    fuse: Any = None

    def fusable(self, fn: Any) -> bool:
        return False

    def graphs(self) -> Any:
        """Device graphs for one compiled program (captured.py), or None: ``recording()``
        (a context for warming up and capturing), ``capture(run, env)`` (a graph of
        the work ``run()`` queues; ``env``: the arrays it reads and writes, by name) and
        the graph's ``launch()``."""
        return None

    def capturable(self, fn: Any) -> bool:
        """Whether a call of ``fn`` can be captured into a device graph."""
        return True

    def is_add(self, fn: Any) -> bool:
        return fn is operator.add or fn is getattr(self.xp, "add", None)

    def copy(self, array: Array) -> Array:
        return self.xp.asarray(array, copy=True)

    def with_out(self, fn: Any) -> Any:
        """``fn`` as a function that takes ``out=`` (the array to write the result
        into), or None: then a replay lets ``fn`` allocate its result."""
        return None

    def can_alias(self, fn: Any) -> bool:
        """Whether ``out`` may be one of ``fn``'s arguments (elementwise functions)."""
        return False

    def typed_number(self, fn: Any, number: Any, dtype: Any) -> Any:
        """``number`` (a Python int or float that ``fn``, an elementwise function, takes
        with arrays of ``dtype``) as the constant ``fn`` computes with, if passing that
        constant instead is faster and gives the same result; or None."""
        return None

    def cast_result(self, fn: Any, result_dtype: Any, dtype: Any) -> Any:
        """``astype(fn(*args), dtype)`` as one function, for an ``fn`` whose result has
        ``result_dtype``, whose `with_out` writes the result straight into an array of
        ``dtype`` (converted as ``astype`` converts it); or None."""
        return None

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Array:
        return self.xp.empty(shape, dtype=dtype)

    def copy_into(self, target: Array, source: Array) -> None:
        target[...] = source

    def writable(self, array: Array) -> bool:
        """Whether a compiled step may update ``array`` in place: an array of its own
        (not a view, not read-only, contiguous)."""
        return False

    def transpose_copy(self, matrix: Array) -> Array:
        """A contiguous copy of ``matrix`` with its last two axes swapped."""
        return self.xp.asarray(self.xp.matrix_transpose(matrix), copy=True)

    # --- random numbers ----------------------------------------------------
    # Drawn on the host with NumPy's PCG64 and then copied, so that a seed gives
    # the same numbers on every device; only initialisation draws random numbers.
    def seed(self, seed: int) -> None:
        """Reset this backend's random generator."""
        self._rng = np.random.default_rng(seed)

    def rng_state(self) -> dict:
        """The random generator's state (a JSON-able dict), for checkpoints."""
        return self._rng.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        self._rng.bit_generator.state = state

    def uniform(self, shape: tuple[int, ...], low: float, high: float, dtype: Any) -> Array:
        return self.asarray(self._rng.uniform(low, high, size=shape), dtype=dtype)

    def normal(self, shape: tuple[int, ...], std: float, dtype: Any) -> Array:
        return self.asarray(self._rng.normal(0.0, std, size=shape), dtype=dtype)

    # --- scatter-add ---------------------------------------------------------
    def scatter_add(self, shape: tuple[int, ...], indices: Array, values: Array) -> Array:
        """``out = zeros(shape); out[indices[i]] += values[i]`` along axis 0.

        ``indices``: (N,) integers; ``values``: (N, *shape[1:]). Repeated
        indices add up. This portable version multiplies by a one-hot matrix
        of shape (shape[0], N), which every Array API library can do.
        """
        xp = self.xp
        rows = xp.arange(shape[0], dtype=indices.dtype)
        one_hot = xp.astype(rows[:, None] == indices[None, :], values.dtype)
        flat = xp.reshape(values, (values.shape[0], -1))
        return xp.reshape(one_hot @ flat, shape)


_ARITHMETIC = {
    operator.add: "add",
    operator.sub: "subtract",
    operator.mul: "multiply",
    operator.truediv: "divide",
    operator.neg: "negative",
    operator.pos: "positive",
    operator.abs: "abs",
    operator.lt: "less",
    operator.le: "less_equal",
    operator.gt: "greater",
    operator.ge: "greater_equal",
    operator.eq: "equal",
    operator.ne: "not_equal",
    operator.and_: "bitwise_and",
    operator.or_: "bitwise_or",
}
"""Python operators recorded in a trace, and the library function each one is."""


def _setitem() -> Any:
    from .tracing import setitem

    return setitem


def _numpy_namespace() -> Any:
    """NumPy's namespace with faster equivalents of a few standard functions.

    ``np.sum``, ``np.max``, ``np.mean``, ``np.reshape``... are Python wrappers that
    cost 1 to 5 microseconds per call before any arithmetic; the engine calls them
    thousands of times per training step on small arrays, so it uses the ufunc
    reductions and array methods underneath instead (same results).
    """

    def mean(x, axis=None, keepdims=False):
        if axis is None:
            count = x.size
        else:
            count = math.prod([x.shape[a] for a in ((axis,) if type(axis) is int else axis)])
        return np.add.reduce(x, axis=axis, keepdims=keepdims) / count

    def clip(x, min=None, max=None):
        if min is not None:
            x = np.maximum(x, min)
        return x if max is None else np.minimum(x, max)

    def broadcast_to(x, shape):
        # np.broadcast_to builds its view in Python (4 us); a filled copy takes 1 us
        # and the gradients that use it are read in full anyway. Unlike the standard's
        # (and CuPy's) read-only view it is a writable copy: never write into it.
        out = np.empty(shape, dtype=x.dtype)
        out[...] = x
        return out

    names = {name: getattr(np, name) for name in dir(np) if not name.startswith("_")}
    names.update(
        sum=lambda x, axis=None, keepdims=False: np.add.reduce(x, axis=axis, keepdims=keepdims),
        max=lambda x, axis=None, keepdims=False: np.maximum.reduce(x, axis=axis, keepdims=keepdims),
        mean=mean,
        clip=clip,
        broadcast_to=broadcast_to,
        reshape=lambda x, shape, copy=None: x.reshape(shape),
        permute_dims=lambda x, axes: x.transpose(axes),
        matrix_transpose=lambda x: x.swapaxes(-1, -2),
    )
    return types.SimpleNamespace(**names)


class NumpyBackend(Backend):
    """NumPy (its main namespace follows the Array API standard since 2.0)."""

    xp = _numpy_namespace()
    device = "cpu"
    supports_out = True

    def __init__(self) -> None:
        super().__init__()
        # id(matrix) -> (weak reference to it, its contiguous transpose or None)
        self._transposes: dict[int, tuple[weakref.ref, np.ndarray | None]] = {}

    def asarray(self, data: Any, dtype: Any = None, copy: bool | None = None) -> Array:
        return np.asarray(data, dtype=dtype, copy=copy)

    def transposed_operand(self, matrix: np.ndarray) -> np.ndarray:
        # OpenBLAS multiplies by a transposed view of a float32 matrix about 1.5x more
        # slowly than by a contiguous copy (67 vs 45 us for (32, 512) @ (512, 128)), and a
        # recurrent weight is the operand of T such products per backward pass. The copy
        # costs more than one slow product, so it is made at the second use, then reused.
        # Weak references: an activation used once is not kept alive by the cache, and a
        # recycled id() is told apart from the array first seen under it. Written with
        # self.xp, so that a compiled step records the same choice.
        if matrix.ndim != 2:
            return self.xp.matrix_transpose(matrix)
        seen = self._transposes.get(id(matrix))
        if seen is None or seen[0]() is not matrix:
            self._transposes[id(matrix)] = (weakref.ref(matrix), None)
            return self.xp.matrix_transpose(matrix)
        if seen[1] is None:
            seen = (seen[0], self.transpose_copy(matrix))
            self._transposes[id(matrix)] = seen
        return seen[1]

    def transpose_copy(self, matrix):
        return np.ascontiguousarray(matrix.swapaxes(-1, -2))

    def writable(self, array):
        return _own_contiguous(array)

    def with_out(self, fn):
        if isinstance(fn, _CastResult):
            return fn.ufunc
        return _with_out(self, np, fn, reduce=True)

    def can_alias(self, fn):
        return _elementwise(np, fn)

    def typed_number(self, fn, number, dtype):
        # A ufunc converts a Python number to the floating dtype of its array operands
        # (NEP 50) at every call; a 0-d array of that dtype, made once, is the same
        # value and saves the conversion (about 0.3 us per call on small arrays).
        dtype = np.dtype(dtype)
        if isinstance(fn, _CastResult):
            fn = fn.fn
        if dtype.kind != "f" or not _elementwise(np, fn) or fn is _setitem():
            return None
        if type(number) is int and abs(number) > 2**53:
            return None
        with np.errstate(all="ignore"):
            typed = np.asarray(number, dtype=dtype)
        if math.isfinite(number) and not np.isfinite(typed):
            return None
        if type(number) is int and int(typed) != number:  # not exact: leave it to the ufunc
            return None
        return typed

    def cast_result(self, fn, result_dtype, dtype):
        # A ufunc writing its boolean result into an array of another dtype converts it
        # as astype does (False, True -> 0, 1), without the boolean array in between.
        ufunc = _with_out(self, np, fn, reduce=False)
        if np.dtype(result_dtype) != np.bool_ or not isinstance(ufunc, np.ufunc):
            return None
        if not _elementwise(np, fn) or np.dtype(dtype) == np.bool_:
            return None
        return _CastResult(fn, ufunc, np.dtype(dtype))

    def clear_backward_cache(self) -> None:
        self._transposes.clear()

    def scatter_add(self, shape, indices, values):
        # bincount over flattened (row, column) positions: 2-3x faster than
        # np.add.at here. It sums in float64, then casts back.
        width = math.prod(shape[1:])
        positions = (indices[:, None] * width + np.arange(width)[None, :]).reshape(-1)
        sums = np.bincount(positions, weights=values.reshape(-1), minlength=shape[0] * width)
        return sums.reshape(shape).astype(values.dtype, copy=False)


class _CastResult:
    """``astype(fn(*args), dtype)``; with ``out=`` (an array of ``dtype``), the replay
    calls ``ufunc`` (``fn``'s ufunc) instead, which writes the converted result there."""

    def __init__(self, fn: Any, ufunc: Any, dtype: Any) -> None:
        self.fn, self.ufunc, self.dtype = fn, ufunc, dtype

    def __call__(self, *args: Any) -> Any:
        return np.astype(self.fn(*args), self.dtype)


def _with_out(backend: Backend, library: Any, fn: Any, reduce: bool) -> Any:
    """NumPy's or CuPy's function taking ``out=`` for a recorded ``fn``, or None.
    ``reduce``: the namespace's sum and max are wrappers, run as ufunc reductions."""
    name = _ARITHMETIC.get(fn)
    if name is not None:
        return getattr(library, name)
    if isinstance(fn, library.ufunc) or fn is _setitem():
        return fn
    xp = backend.xp
    for name, ufunc in (("sum", library.add), ("max", library.maximum)):
        if fn is getattr(xp, name):
            if not reduce:
                return fn
            return lambda x, axis=None, keepdims=False, out=None, u=ufunc: u.reduce(
                x, axis=axis, keepdims=keepdims, out=out
            )
    if fn is xp.concat:  # NumPy's and CuPy's concatenate take out=; the standard's may not
        return library.concatenate
    return fn if fn in (xp.stack, xp.matmul) else None


def _own_contiguous(array: Any) -> bool:
    flags = getattr(array, "flags", None)
    return (
        flags is not None
        and getattr(array, "base", None) is None
        and flags.c_contiguous
        and getattr(flags, "writeable", True)
        and not isinstance(array, np.generic)
    )


def _elementwise(library: Any, fn: Any) -> bool:
    if fn in _ARITHMETIC:
        return True
    if isinstance(fn, library.ufunc):
        return getattr(fn, "signature", None) is None
    return fn is _setitem()


class StrictBackend(Backend):
    """array-api-strict: nothing outside the standard works, which is the point."""

    def __init__(self, device_name: str | None) -> None:
        super().__init__()
        try:
            self.xp = importlib.import_module("array_api_strict")
        except ImportError:
            raise DeviceError(
                "device 'strict' needs array-api-strict: pip install 'tinygrad-ee[test]'"
            ) from None
        names = {d._device: d for d in self.xp.__array_namespace_info__().devices()}
        if device_name is None:
            device_name = "CPU_DEVICE"
        if device_name not in names:
            raise DeviceError(
                f"array-api-strict has no device {device_name!r}; it has {sorted(names)}"
            )
        self._device = names[device_name]
        self.device = "strict" if device_name == "CPU_DEVICE" else f"strict:{device_name}"

    def asarray(self, data, dtype=None, copy=None):
        return self.xp.asarray(data, dtype=dtype, device=self._device, copy=copy)

    def to_host(self, array):
        return np.from_dlpack(array).copy()


def _cupy_namespace(cupy: Any) -> Any:
    """CuPy's main namespace, with the Array API names it may lack filled in."""
    fill = {
        "concat": cupy.concatenate,
        "permute_dims": cupy.transpose,
        "pow": cupy.power,
        "astype": lambda x, dtype, copy=True: x.astype(dtype, copy=copy),
        "matrix_transpose": lambda x: cupy.swapaxes(x, -1, -2),
        "bool": getattr(cupy, "bool_", None),  # CuPy 13 has only bool_
    }
    names = {name: getattr(cupy, name) for name in dir(cupy) if not name.startswith("_")}
    for name, function in fill.items():
        names.setdefault(name, function)
    return types.SimpleNamespace(**names)


class CupyBackend(Backend):
    """CuPy on one CUDA GPU."""

    def __init__(self, index: int) -> None:
        super().__init__()
        try:
            cupy = importlib.import_module("cupy")
        except ModuleNotFoundError:
            raise DeviceError(
                f"device 'cuda:{index}' needs CuPy, which is not installed: {CUDA_INSTALL_HINT}"
            ) from None
        except ImportError as error:  # installed, but e.g. built for another CUDA version
            raise DeviceError(
                f"device 'cuda:{index}' needs CuPy, which is installed but fails to import "
                f"({error}); reinstall the build matching your CUDA: {CUDA_INSTALL_HINT}"
            ) from None
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as error:  # CuPy raises its own CUDA errors when no driver is present
            raise DeviceError(
                f"CuPy is installed but no CUDA GPU is visible ({error}); "
                "check the NVIDIA driver and CUDA_VISIBLE_DEVICES"
            ) from None
        if count == 0:
            raise DeviceError("CuPy is installed but no CUDA GPU is visible")
        if index >= count:
            raise DeviceError(f"device 'cuda:{index}' does not exist: {count} GPU(s) visible")
        self._cupy = cupy
        self._gpu = cupy.cuda.Device(index)
        # Ops run on CuPy's current device: make it this one. (One GPU per process;
        # mixing cuda:0 and cuda:1 tensors in one program is not supported.)
        self._gpu.use()
        self.xp = _cupy_namespace(cupy)
        self.device = f"cuda:{index}"
        self.supports_out = True

    def asarray(self, data, dtype=None, copy=None):
        with self._gpu:  # cupy.asarray has no copy argument; cupy.array copies when asked
            return self._cupy.array(data, dtype=dtype, copy=bool(copy))

    def to_host(self, array):
        return self._cupy.asnumpy(array)

    def synchronize(self):
        self._gpu.synchronize()

    def memory_bytes(self):
        return self._gpu.mem_info[1]  # (free, total)

    def transpose_copy(self, matrix):
        return self._cupy.ascontiguousarray(self._cupy.swapaxes(matrix, -1, -2))

    def copy(self, array):
        return self._cupy.array(array, copy=True)

    def writable(self, array):
        return _own_contiguous(array)

    def with_out(self, fn):
        return _with_out(self, self._cupy, fn, reduce=False)

    def can_alias(self, fn):
        return _elementwise(self._cupy, fn)

    # Compiled steps: elementwise chains fused into one kernel each (cupy.fuse), and
    # the replay captured as CUDA graphs. CuPy refuses cuBLAS calls during stream
    # capture ("calling cuBLAS API during stream capture is currently unsupported",
    # CuPy 14), so products run between the graphs.
    def fuse(self, function):
        return self._cupy.fuse(kernel_name=function.__name__)(function)

    def fusable(self, fn):
        return (
            (fn in _ARITHMETIC and fn is not operator.matmul)
            or (_elementwise(self._cupy, fn) and fn is not _setitem())
            or fn is self._cupy.where
        )

    def capturable(self, fn):
        return fn not in (self._cupy.matmul, operator.matmul, self._cupy.dot)

    def graphs(self):
        return _CudaGraphs(self._cupy)

    def scatter_add(self, shape, indices, values):
        # cupy.add.at runs atomic adds: float32, float64 (and int32/int64, uint32,
        # uint64) are supported; float16 is not.
        with self._gpu:
            out = self._cupy.zeros(shape, dtype=values.dtype)
            self._cupy.add.at(out, indices, values)
        return out


class _CudaGraphs:
    """CUDA graphs for one compiled program (see `Backend.graphs`). The program's arrays
    come from a memory pool of its own while it is warmed up and captured: memory a
    graph uses is never handed to anyone else."""

    def __init__(self, cupy: Any) -> None:
        self._cupy = cupy
        self._pool = cupy.cuda.MemoryPool()
        self._stream = cupy.cuda.Stream(non_blocking=True)  # capture needs its own stream

    @contextlib.contextmanager
    def recording(self):
        with self._cupy.cuda.using_allocator(self._pool.malloc), self._stream:
            yield
        self._stream.synchronize()

    def capture(self, run, env):
        self._stream.begin_capture()
        try:
            run()
        finally:
            graph = self._stream.end_capture()
        return graph  # launch() runs it on the current stream


_BACKENDS: dict[str, Backend] = {}


def get_backend(device: str | Backend = "cpu") -> Backend:
    """The backend serving ``device`` (created once, then reused)."""
    if isinstance(device, Backend):
        return device
    backend = _BACKENDS.get(device)
    if backend is not None:
        return backend
    if not isinstance(device, str):
        raise DeviceError(f"device must be a string like 'cpu' or 'cuda:0', got {device!r}")
    kind, _, suffix = device.partition(":")
    if kind == "cpu" and not suffix:
        canonical, make = "cpu", NumpyBackend
    elif kind == "cuda" and (suffix == "" or suffix.isdigit()):
        index = int(suffix or 0)
        canonical, make = f"cuda:{index}", lambda: CupyBackend(index)
    elif kind == "strict":
        canonical = "strict" if suffix in ("", "CPU_DEVICE") else device
        make = lambda: StrictBackend(suffix or None)  # noqa: E731
    else:
        raise DeviceError(
            f"unknown device {device!r}: expected 'cpu', 'cuda', 'cuda:N' or 'strict'"
        )
    backend = _BACKENDS.get(canonical) or make()
    _BACKENDS[device] = _BACKENDS[canonical] = backend
    return backend
