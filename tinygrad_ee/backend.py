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

import functools
import importlib
import math
import os
import types
import weakref
from typing import Any

import numpy as np

from .compiler.lowering import CupyLowering, Lowering, NumpyLowering

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


class Backend(Lowering):
    """One array library on one device.

    Subclasses set ``xp`` (an Array API namespace) and ``device`` (the device
    string users pass), and may override the non-standard helpers below. What a
    compiled step may do with the library's calls is the backend's lowering, mixed in
    from compiler/lowering.py. While a step is traced, the tracer replaces ``xp`` and a
    few methods on the instance with recording ones (compiler/trace.py, `tracing`).
    """

    xp: Any
    device: str

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


class NumpyBackend(NumpyLowering, Backend):
    """NumPy (its main namespace follows the Array API standard since 2.0)."""

    xp = _numpy_namespace()
    device = "cpu"

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
            seen = (seen[0], self.xp.ascontiguousarray(self.xp.matrix_transpose(matrix)))
            self._transposes[id(matrix)] = seen
        return seen[1]

    def clear_backward_cache(self) -> None:
        self._transposes.clear()

    def scatter_add(self, shape, indices, values):
        # bincount over flattened (row, column) positions: 2-3x faster than
        # np.add.at here. It sums in float64, then casts back.
        width = math.prod(shape[1:])
        positions = (indices[:, None] * width + np.arange(width)[None, :]).reshape(-1)
        sums = np.bincount(positions, weights=values.reshape(-1), minlength=shape[0] * width)
        return sums.reshape(shape).astype(values.dtype, copy=False)


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


class CupyBackend(CupyLowering, Backend):
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

    def asarray(self, data, dtype=None, copy=None):
        with self._gpu:  # cupy.asarray has no copy argument; cupy.array copies when asked
            return self._cupy.array(data, dtype=dtype, copy=bool(copy))

    def to_host(self, array):
        return self._cupy.asnumpy(array)

    def synchronize(self):
        self._gpu.synchronize()

    def memory_bytes(self):
        return self._gpu.mem_info[1]  # (free, total)

    def scatter_add(self, shape, indices, values):
        # cupy.add.at runs atomic adds: float32, float64 (and int32/int64, uint32,
        # uint64) are supported; float16 is not.
        with self._gpu:
            out = self._cupy.zeros(shape, dtype=values.dtype)
            self._cupy.add.at(out, indices, values)
        return out


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
