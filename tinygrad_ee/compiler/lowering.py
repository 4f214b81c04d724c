"""What each backend lets a compiled step do with the calls it recorded.

`Lowering`, mixed into every `Backend` (backend.py), replays each call as traced,
allocating every result (array-api-strict). `NumpyLowering` and `CupyLowering` add
``out=`` (`with_out`: buffers reused, parameters updated in their own arrays); NumPy
the rewrites `typed_number` and `cast_result` (passes.py); CuPy fused kernels
(`fuse`) and CUDA graphs (`graphs`, graphs.py).
"""

from __future__ import annotations

import contextlib
import functools
import math
import operator
from typing import Any

import numpy as np

from .ir import setitem

# Python operators a trace records, and the library function each one is.
OPERATORS = {
    getattr(operator, op): name
    for op, name in (
        pair.split(":")
        for pair in "add:add sub:subtract mul:multiply truediv:divide neg:negative pos:positive "
        "abs:abs lt:less le:less_equal gt:greater ge:greater_equal eq:equal ne:not_equal "
        "and_:bitwise_and or_:bitwise_or".split()
    )
}

# Functions whose result never shares memory with their arguments (any other's may).
FRESH = (
    "add subtract multiply divide negative positive power exp log log1p expm1 sqrt "
    "tanh abs sign maximum minimum greater greater_equal less less_equal equal "
    "not_equal bitwise_and bitwise_or logical_not isfinite isnan isinf where "
    "matmul sum max min mean prod all any argmax concat stack take take_along_axis "
    "zeros ones empty full zeros_like ones_like full_like arange clip square"
).split()


class Lowering:
    """The defaults: every call as traced, every result allocated by the call."""

    xp: Any  # the backend's namespace
    # Methods written with the library rather than ``xp``: traced as one instruction each.
    RECORDED_METHODS: tuple[str, ...] = ("scatter_add",)

    @functools.cached_property
    def fresh_functions(self) -> frozenset:
        functions = {getattr(self.xp, name, None) for name in FRESH} | set(OPERATORS)
        return frozenset(functions - {None}) | {setitem}

    def with_out(self, fn: Any) -> Any:
        """``fn`` as a function taking ``out=`` (the array to write into), or None."""
        return None

    def can_alias(self, fn: Any) -> bool:
        """Whether ``out`` may be one of ``fn``'s arguments (elementwise functions)."""
        return False

    def typed_number(self, fn: Any, number: Any, dtype: Any) -> Any:
        """``number`` (an int or float ``fn`` takes with arrays of ``dtype``) as the constant
        ``fn`` computes with, if passing it is faster and gives the same bits; or None."""
        return None

    def cast_result(self, fn: Any, result_dtype: Any, dtype: Any) -> Any:
        """``astype(fn(*args), dtype)`` as one function whose `with_out` writes ``fn``'s
        result (of ``result_dtype``) straight into an array of ``dtype``; or None."""
        return None

    def writable(self, array: Any) -> bool:
        """Whether a program may update ``array`` in place (not a view, contiguous)."""
        return False

    fuse: Any = None  # fuse(python_function) -> one kernel doing the same, if any

    def fusable(self, fn: Any) -> bool:
        """Whether ``fn`` may be part of a fused elementwise chain."""
        return False

    def graphs(self) -> Any:
        """Device graphs for one program (graphs.py), or None: ``recording()`` (a context),
        ``capture(run, env)`` (a graph of what ``run()`` queues, reading and writing
        ``env``), the graph's ``launch()``."""
        return None

    def capturable(self, fn: Any) -> bool:
        """Whether a call of ``fn`` can be captured into a device graph."""
        return True

    def copy(self, array: Any) -> Any:
        return self.xp.asarray(array, copy=True)

    def copy_into(self, target: Any, source: Any) -> None:
        target[...] = source

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        return self.xp.empty(shape, dtype=dtype)


class _OutLowering(Lowering):
    """What NumPy and CuPy share: their functions write into a given array."""

    library: Any  # numpy or cupy

    def with_out(self, fn):
        library, xp = self.library, self.xp
        if isinstance(fn, _CastResult):
            return fn.ufunc
        if fn in OPERATORS:
            return getattr(library, OPERATORS[fn])
        if isinstance(fn, library.ufunc) or fn is setitem:
            return fn
        for name, ufunc in (("sum", library.add), ("max", library.maximum)):
            if fn is getattr(xp, name) and fn is not getattr(library, name):
                # a wrapper without out= (NumPy's namespace): the ufunc's reduction has it
                return lambda x, axis=None, keepdims=False, out=None, u=ufunc: u.reduce(
                    x, axis=axis, keepdims=keepdims, out=out
                )
        if fn is xp.concat:  # NumPy's and CuPy's concatenate take out=; the standard's may not
            return library.concatenate
        return fn if fn in (xp.stack, xp.matmul, xp.sum, xp.max) else None

    def can_alias(self, fn):
        if fn in OPERATORS or fn is setitem:
            return True
        return isinstance(fn, self.library.ufunc) and getattr(fn, "signature", None) is None

    def writable(self, array):
        flags = getattr(array, "flags", None)
        return (
            flags is not None
            and getattr(array, "base", None) is None
            and flags.c_contiguous
            and getattr(flags, "writeable", True)
            and not isinstance(array, np.generic)
        )


class NumpyLowering(_OutLowering):
    library = np

    def typed_number(self, fn, number, dtype):
        # A ufunc converts a Python number to the floating dtype of its array operands
        # (NEP 50) at every call; a 0-d array of that dtype, made once, is the same
        # value and saves the conversion (about 0.3 us per call on small arrays).
        dtype = np.dtype(dtype)
        fn = fn.fn if isinstance(fn, _CastResult) else fn
        if dtype.kind != "f" or not self.can_alias(fn) or fn is setitem:
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
        ufunc = self.with_out(fn)
        if np.dtype(result_dtype) != np.bool_ or not isinstance(ufunc, np.ufunc):
            return None
        if not self.can_alias(fn) or np.dtype(dtype) == np.bool_:
            return None
        return _CastResult(fn, ufunc, np.dtype(dtype))


class _CastResult:
    """``astype(fn(*args), dtype)``; with ``out=`` (an array of ``dtype``), the replay
    calls ``ufunc`` (``fn``'s ufunc) instead, which writes the converted result there."""

    def __init__(self, fn: Any, ufunc: Any, dtype: Any) -> None:
        self.fn, self.ufunc, self.dtype = fn, ufunc, dtype

    def __call__(self, *args: Any) -> Any:
        return np.astype(self.fn(*args), self.dtype)


class CupyLowering(_OutLowering):
    # CuPy refuses cuBLAS calls during stream capture ("calling cuBLAS API during stream
    # capture is currently unsupported", CuPy 14): products run between the graphs.
    _cupy: Any
    library = property(lambda self: self._cupy)

    def copy(self, array):
        return self._cupy.array(array, copy=True)

    def fuse(self, function):
        return self._cupy.fuse(kernel_name=function.__name__)(function)

    def fusable(self, fn):
        return (self.can_alias(fn) or fn is self._cupy.where) and fn is not setitem

    def capturable(self, fn):
        return fn not in (self._cupy.matmul, operator.matmul, self._cupy.dot)

    def graphs(self):
        return _CudaGraphs(self._cupy)


class _CudaGraphs:
    """CUDA graphs for one program (see `Lowering.graphs`). The program's arrays come
    from a memory pool of its own while it is warmed up and captured: memory a graph
    uses is never handed to anyone else."""

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
