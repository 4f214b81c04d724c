"""Tracing: run a step once, eagerly, while recording every array call it makes.

While a `Recorder` is active, each backend's ``xp`` is a recording namespace, and every
tensor's ``.data`` is a `Traced` stand-in: it holds the real array (so the step runs
exactly as it would eagerly) and the program `Value` it is. Every call that touches
one, whether through ``xp``, an operator or an array method, is appended to the
program as an `Instruction` and returns a new `Traced`. The first read of a tensor
made before the trace (a parameter, an optimiser buffer) turns its array into a
program input; writes to such tensors become the program's outputs.

In-place array operations (``a += b``, ``a[i] = v``) are recorded as new values
(static single assignment): `compiler.py` decides later which of them can write into
an existing buffer.

A compiled step can only replay array work, so reading a value in Python (``bool``,
``float``, ``.item()``, ``.numpy()``) raises `TraceError`. Engine code that needs a
value-dependent check calls `require`, which the program keeps as a check.
"""

from __future__ import annotations

import contextlib
import linecache
import operator
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

_active: Recorder | None = None  # the recorder of the trace in progress, if any

_ENGINE_DIR = os.path.dirname(os.path.abspath(__file__))


class TraceError(RuntimeError):
    """A step that cannot be compiled, naming what it did and where."""


# --- the program ------------------------------------------------------------------------
@dataclass(eq=False)
class Value:
    """One value of the program: a step input, a tensor's array read at the start, a
    Python number read at each call (``host``), a constant, or an instruction's result.

    ``shape``/``dtype`` are None for Python numbers. ``views``: the values whose memory
    this one may share (a reshape or slice of them), so their buffers must outlive it.
    """

    index: int
    kind: str  # "input", "state", "host", "const" or "op"
    shape: tuple[int, ...] | None
    dtype: Any
    contiguous: bool = False
    views: tuple[Value, ...] = ()
    constant: Any = None  # the object itself, for "const"

    def __repr__(self) -> str:
        return f"v{self.index}"


@dataclass(eq=False)
class Instruction:
    """``out = fn(*args, **kwargs)``; args and kwargs hold Values where arrays go."""

    fn: Callable
    args: tuple
    kwargs: dict
    out: Value | None  # None for a check
    name: str
    error: Callable[..., Exception] | None = None  # checks: makes the error to raise


@dataclass
class StateSlot:
    """A tensor made before the trace whose ``.data`` the step read or wrote."""

    tensor: Any
    entry_array: Any
    entry: Traced | None = None  # its read value, if it was read


@dataclass
class Trace:
    """What `Recorder.finish` hands the compiler."""

    values: list[Value]
    instructions: list[Instruction]
    inputs: list[Value | None]  # one per tensor argument (None: not read)
    states: list[tuple[Any, Value | None]]  # (tensor, value of its read array)
    writes: list[tuple[Any, Value]]  # (tensor, value its .data holds at the end)
    grads: list[tuple[Any, Any]]  # (tensor, what .grad must be after each call)
    # (argument position, value of its new .grad, or else what .grad must be)
    input_grads: list[tuple[int, Value | None, Any]]
    hosts: list[tuple[Value, Callable[[], Any]]]
    guards: list[tuple[Callable[[], Any], Any]]
    result: Any  # the step's return value, with its tensors


# --- stand-ins for arrays ---------------------------------------------------------------
class Traced:
    """An array or Python number computed while tracing: the real one, and its Value."""

    __slots__ = ("array", "value", "__weakref__")
    __hash__ = object.__hash__  # == is elementwise, as for arrays
    __array_ufunc__ = None  # NumPy's operators defer to ours (a + traced -> traced.__radd__)

    def __init__(self, array: Any, value: Value) -> None:
        self.array = array
        self.value = value

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def ndim(self) -> int:
        return len(self.array.shape)

    @property
    def size(self) -> int:
        return self.array.size

    @property
    def dtype(self) -> Any:
        return self.array.dtype

    def __repr__(self) -> str:
        return f"Traced({self.value!r}, shape={getattr(self.array, 'shape', None)})"

    def __len__(self) -> int:
        return self.array.shape[0]

    def __getattr__(self, name: str) -> Any:
        # Array methods (x.reshape(...), x.T) are recorded; metadata passes through.
        # Protocols (__array_interface__, __dlpack__, ...) would hand out the real data.
        if name.startswith("__"):
            raise AttributeError(name)
        attribute = getattr(self.array, name)
        if callable(attribute):
            return lambda *args, **kwargs: _record(
                operator.methodcaller(name, *args, **kwargs), (self,), {}, f".{name}()"
            )
        if hasattr(attribute, "shape") and hasattr(attribute, "dtype"):
            return _record(operator.attrgetter(name), (self,), {}, f".{name}")
        return attribute

    def __getitem__(self, index: Any) -> Traced:
        return _record(operator.getitem, (self, index), {}, "getitem")

    def __setitem__(self, index: Any, value: Any) -> None:
        self._rebind(_record(setitem, (self, index, value), {}, "setitem"))

    def _rebind(self, result: Traced) -> Traced:
        """An in-place update: this stand-in now holds the new value."""
        if not hasattr(result.array, "shape") or result.shape != self.shape:
            raise TraceError(f"an in-place operation changed the shape of {self!r}")
        if result.dtype != self.dtype:
            raise TraceError(
                f"an in-place operation changed the dtype of {self!r} "
                f"({self.dtype} -> {result.dtype}): convert explicitly"
            )
        self.array, self.value = result.array, result.value
        return self

    # Reading a value in Python is what a replay cannot do.
    def __bool__(self) -> bool:
        raise value_read("bool() of an array")

    def __float__(self) -> float:
        raise value_read("float() of an array")

    def __int__(self) -> int:
        raise value_read("int() of an array")

    __index__ = __int__

    def __iter__(self) -> Iterator:
        raise value_read("iterating over an array")

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise value_read("converting an array to NumPy")

    def item(self) -> Any:
        raise value_read(".item()")

    def tolist(self) -> Any:
        raise value_read(".tolist()")


def setitem(array: Any, index: Any, value: Any, out: Any = None) -> Any:
    """``array`` with ``array[index] = value``, into ``out`` (a fresh copy if None;
    ``out`` may be ``array`` itself when nothing else needs the old values)."""
    if out is None:
        out = array.copy() if hasattr(array, "copy") else _copy_strict(array)
    elif out is not array:
        out[...] = array
    out[index] = value
    return out


def _copy_strict(array: Any) -> Any:
    namespace = array.__array_namespace__()
    return namespace.asarray(array, copy=True)


_OPERATORS = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "truediv": operator.truediv,
    "floordiv": operator.floordiv,
    "mod": operator.mod,
    "pow": operator.pow,
    "matmul": operator.matmul,
    "and": operator.and_,
    "or": operator.or_,
    "xor": operator.xor,
}
_COMPARISONS = {
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "eq": operator.eq,
    "ne": operator.ne,
}
_UNARY = {"neg": operator.neg, "pos": operator.pos, "abs": operator.abs, "invert": operator.invert}


def _install_operators() -> None:
    def binary(fn, name):
        return lambda self, other: _record(fn, (self, other), {}, name)

    def reflected(fn, name):
        return lambda self, other: _record(fn, (other, self), {}, name)

    def inplace(fn, name):
        return lambda self, other: self._rebind(_record(fn, (self, other), {}, name))

    for name, fn in _OPERATORS.items():
        setattr(Traced, f"__{name}__", binary(fn, name))
        setattr(Traced, f"__r{name}__", reflected(fn, name))
        setattr(Traced, f"__i{name}__", inplace(fn, name))
    for name, fn in _COMPARISONS.items():
        setattr(Traced, f"__{name}__", binary(fn, name))
    for name, fn in _UNARY.items():
        setattr(
            Traced, f"__{name}__", lambda self, fn=fn, name=name: _record(fn, (self,), {}, name)
        )


_install_operators()


# --- recording ------------------------------------------------------------------------
def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, type)


def _real(x: Any) -> Any:
    """``x`` with every Traced replaced by its real array (in tuples, lists and dicts)."""
    if type(x) is Traced:
        return x.array
    if type(x) in (tuple, list):
        return type(x)(_real(item) for item in x)
    if type(x) is dict:
        return {key: _real(item) for key, item in x.items()}
    return x


def _has_traced(x: Any) -> bool:
    if type(x) is Traced:
        return True
    if type(x) in (tuple, list):
        return any(_has_traced(item) for item in x)
    if type(x) is dict:
        return any(_has_traced(item) for item in x.values())
    return False


def _record(fn: Callable, args: tuple, kwargs: dict, name: str) -> Any:
    """Run ``fn`` on the real arrays and, if it made an array (or a number from traced
    ones), append it to the active program and return its stand-in."""
    recorder = _active
    if recorder is None:  # a stand-in outlived its trace
        raise TraceError(f"{name}: an array of a finished trace was used")
    return recorder.call(fn, args, kwargs, name)


class RecordingNamespace:
    """A backend's ``xp`` during a trace: each function call is recorded."""

    def __init__(self, xp: Any) -> None:
        self._xp = xp
        self._functions: dict[str, Callable] = {}

    def __getattr__(self, name: str) -> Any:
        function = self._functions.get(name)
        if function is not None:
            return function
        attribute = getattr(self._xp, name)
        if not callable(attribute) or isinstance(attribute, type):
            return attribute  # dtypes, constants, classes
        function = lambda *args, **kwargs: _record(attribute, args, kwargs, name)  # noqa: E731
        self._functions[name] = function
        return function


class Recorder:
    """The program of one trace, as it is being recorded.

    ``inputs``: the step's tensor arguments, whose arrays are swapped in per call.
    ``fresh(fn)``: whether ``fn`` returns memory of its own (else its result may be a
    view of its array arguments).
    """

    def __init__(self, inputs: list[Any], fresh: Callable[[Callable], bool]) -> None:
        self.fresh = fresh
        self.values: list[Value] = []
        self.instructions: list[Instruction] = []
        self.inputs = {id(t): (t, None) for t in inputs}
        self.input_order = [id(t) for t in inputs]
        self.constants: dict[int, Value] = {}
        self.states: dict[int, StateSlot] = {}
        self.created: dict[int, Any] = {}  # tensors made during the trace (kept alive)
        self.grad_reads: dict[int, tuple[Any, Any]] = {}  # .grad read before written
        self.grad_writes: dict[int, Any] = {}
        self.hosts: list[tuple[Value, Callable[[], Any]]] = []
        self.guards: list[tuple[Callable[[], Any], Any]] = []
        self.running = False  # a recorded function is running: its own calls are not

    def new_value(self, result: Any, kind: str, views: tuple = (), constant: Any = None) -> Value:
        if _is_array(result):
            flags = getattr(result, "flags", None)
            contiguous = bool(getattr(flags, "c_contiguous", False)) if flags is not None else False
            shape, dtype = tuple(result.shape), result.dtype
        else:
            contiguous, shape, dtype = False, None, None
        value = Value(len(self.values), kind, shape, dtype, contiguous, views, constant)
        self.values.append(value)
        return value

    def constant(self, array: Any) -> Value:
        value = self.constants.get(id(array))
        if value is None:
            value = self.constants[id(array)] = self.new_value(array, "const", constant=array)
        return value

    def refs(self, x: Any) -> Any:
        """``x`` with Traced replaced by their Values and raw arrays by constants."""
        if type(x) is Traced:
            return x.value
        if type(x) in (tuple, list):
            return type(x)(self.refs(item) for item in x)
        if type(x) is dict:
            return {key: self.refs(item) for key, item in x.items()}
        if _is_array(x):
            return self.constant(x)
        return x

    def call(self, fn: Callable, args: tuple, kwargs: dict, name: str) -> Any:
        if self.running:  # inside a recorded function (a backend method using xp)
            return fn(*args, **kwargs)
        self.running = True
        try:
            result = fn(*_real(args), **_real(kwargs))
        finally:
            self.running = False
        traced_input = _has_traced(args) or _has_traced(kwargs)
        if not _is_array(result) and not (traced_input and isinstance(result, (int, float))):
            if isinstance(result, (tuple, list)) and any(_is_array(r) for r in result):
                raise TraceError(f"{name}: functions returning several arrays are not traced")
            return result
        arg_refs, kwarg_refs = self.refs(args), self.refs(kwargs)
        arrays = (v for v in values_in((arg_refs, kwarg_refs)) if v.shape is not None)
        views = () if self.fresh(fn) else tuple(arrays)
        value = self.new_value(result, "op", views)
        self.instructions.append(Instruction(fn, arg_refs, kwarg_refs, value, name))
        return Traced(result, value)

    # --- tensors: reading and writing .data and .grad ---------------------------------
    def read_tensor(self, tensor: Any, array: Any) -> Traced:
        key = id(tensor)
        if key in self.created:  # made in the step from host data: a constant
            return Traced(array, self.constant(array))
        if key in self.inputs:
            traced = Traced(array, self.new_value(array, "input"))
            self.inputs[key] = (tensor, traced.value)
            return traced
        slot = self.states.get(key)
        if slot is None:
            slot = self.states[key] = StateSlot(tensor, array)
        slot.entry = Traced(array, self.new_value(array, "state"))
        return slot.entry

    def write_tensor(self, tensor: Any, new: Any, empty: bool) -> None:
        key = id(tensor)
        if empty:
            self.created[key] = tensor
            return
        if key in self.created:
            return
        if key in self.inputs:
            raise TraceError(
                f"a compiled step assigned to the .data of its argument ({user_site()}); "
                "arguments are read-only in a compiled step"
            )
        if new is not None and type(new) is not Traced:
            raise TraceError(
                "a tensor made before the step was given an array computed outside "
                f"the traced operations ({user_site()}); compute it with tensor ops"
            )
        if key not in self.states:
            self.states[key] = StateSlot(tensor, _data_slot.__get__(tensor))

    def read_grad(self, tensor: Any, grad: Any) -> None:
        key = id(tensor)
        if key not in self.created and key not in self.grad_writes and key not in self.grad_reads:
            self.grad_reads[key] = (tensor, grad)

    def write_grad(self, tensor: Any, grad: Any) -> None:
        if id(tensor) not in self.created:
            self.grad_writes[id(tensor)] = tensor

    # --- the end ------------------------------------------------------------------------
    def finish(self, result: Any) -> Trace:
        """Put real arrays back into every tensor and describe the program.

        Tensors made before the step get their arrays from before it back: the trace only
        recorded, and the program's first replay makes the step's changes (so that every
        call, the first too, computes exactly what the program computes). Those the step
        wrote get arrays of their own if needed: replays write into them in place."""
        states, writes = [], []
        for slot in self.states.values():
            final = _data_slot.__get__(slot.tensor)
            if slot.entry is not None:
                states.append((slot.tensor, slot.entry.value))
            array = slot.entry_array
            if type(final) is Traced and final is not slot.entry:
                writes.append((slot.tensor, final.value))
                if not slot.tensor.backend.writable(array):
                    array = _owned_copy(slot.tensor, array)
            _data_slot.__set__(slot.tensor, array)
        grads, input_grads = [], []
        for tensor in self.grad_writes.values():
            grad = _grad_slot.__get__(tensor)
            data = _data_slot.__get__(grad) if id(grad) in self.created else None
            value = data.value if type(data) is Traced else None
            if id(tensor) in self.inputs:  # a new array for each call's argument
                position = self.input_order.index(id(tensor))
                input_grads.append((position, value, None if value is not None else grad))
                continue
            grads.append((tensor, grad))
            if value is not None:
                writes.append((grad, value))
                _data_slot.__set__(grad, _owned_copy(grad, data.array))
        for tensor in self.created.values():
            data = _data_slot.__get__(tensor)
            if type(data) is Traced:
                _data_slot.__set__(tensor, data.array)
        for tensor, _ in self.inputs.values():
            data = _data_slot.__get__(tensor)
            if type(data) is Traced:
                _data_slot.__set__(tensor, data.array)
        guards = self.guards + [
            (lambda t=t: _grad_slot.__get__(t), g) for t, g in self.grad_reads.values()
        ]
        inputs = [self.inputs[key][1] for key in self.input_order]
        return Trace(
            self.values,
            self.instructions,
            inputs,
            states,
            writes,
            grads,
            input_grads,
            self.hosts,
            guards,
            result,
        )


def _owned_copy(tensor: Any, array: Any) -> Any:
    """A copy of ``array`` that only ``tensor`` holds: its buffer in later replays."""
    return tensor.backend.copy(array)


def values_in(x: Any) -> Iterator[Value]:
    """The Values in an instruction's (nested) arguments."""
    if isinstance(x, Value):
        yield x
    elif type(x) in (tuple, list):
        for item in x:
            yield from values_in(item)
    elif type(x) is dict:
        for item in x.values():
            yield from values_in(item)


# --- hooks for engine code -----------------------------------------------------------------
def is_tracing() -> bool:
    return _active is not None


def require(ok: Any, error: Callable[..., Exception], *arrays: Any) -> None:
    """Raise ``error(*arrays)`` unless ``ok`` (a 0-d bool array) holds. In a trace, the
    program keeps the check and makes it at every replay (``arrays`` are passed to
    ``error`` then, so its message can name the values)."""
    if _active is None:
        if not bool(ok):
            raise error(*arrays)
        return
    if type(ok) is not Traced:
        if not bool(ok):
            raise error(*_real(arrays))
        return
    if not bool(ok.array):
        raise error(*_real(arrays))
    args = (ok.value, *_active.refs(arrays))
    _active.instructions.append(Instruction(bool, args, {}, None, "check", error))


def host_scalar(read: Callable[[], float]) -> Any:
    """``read()``: a Python number that may change between calls of a compiled step (a
    learning rate set by a schedule). In a trace it becomes an input of the program,
    read again at each replay; otherwise it is simply ``read()``."""
    value = read()
    recorder = _active
    if recorder is None:
        return value
    traced = Traced(value, recorder.new_value(value, "host"))
    recorder.hosts.append((traced.value, read))
    return traced


def guard(read: Callable[[], Any]) -> None:
    """In a trace: the program is valid only while ``read()`` returns what it returns
    now (a structure such as an optimiser's parameter list); a change retraces."""
    if _active is not None:
        _active.guards.append((read, read()))


def value_read(what: str) -> TraceError:
    return TraceError(
        f"{what} inside a compiled step, at {user_site()}: a compiled step replays "
        "array operations only, so it cannot read a tensor's value in Python (to branch "
        "on it, print it or convert it). Compute with ops instead (where, clip, ...), "
        "or read the value outside the step, e.g. from the tensors it returns"
    )


def user_site() -> str:
    """``file:line in function: source`` of the innermost caller outside the engine."""
    frame = sys._getframe(1)
    while frame is not None and os.path.dirname(frame.f_code.co_filename) == _ENGINE_DIR:
        frame = frame.f_back
    if frame is None:
        return "an unknown place"
    filename, line = frame.f_code.co_filename, frame.f_lineno
    source = linecache.getline(filename, line).strip()
    return f"{filename}:{line} in {frame.f_code.co_name}" + (f": {source}" if source else "")


# --- switching tracing on and off ------------------------------------------------------------
_data_slot: Any = None  # Tensor.data's own slot descriptor (set by `tracing_tensors`)
_grad_slot: Any = None


class _DataDescriptor:
    """Tensor.data during a trace: reads hand out stand-ins, writes are noted."""

    def __get__(self, tensor: Any, owner: Any = None) -> Any:
        if tensor is None:
            return self
        array = _data_slot.__get__(tensor, owner)
        if array is None or type(array) is Traced:
            return array
        traced = _active.read_tensor(tensor, array)
        _data_slot.__set__(tensor, traced)
        return traced

    def __set__(self, tensor: Any, value: Any) -> None:
        try:
            _data_slot.__get__(tensor)
            empty = False
        except AttributeError:
            empty = True
        _active.write_tensor(tensor, value, empty)
        _data_slot.__set__(tensor, value)


class _GradDescriptor:
    def __get__(self, tensor: Any, owner: Any = None) -> Any:
        if tensor is None:
            return self
        grad = _grad_slot.__get__(tensor, owner)
        _active.read_grad(tensor, grad)
        return grad

    def __set__(self, tensor: Any, value: Any) -> None:
        _active.write_grad(tensor, value)
        _grad_slot.__set__(tensor, value)


def tensor_value(tensor: Any) -> Value | None:
    """The Value a tensor's ``.data`` holds in the trace in progress (None: not traced)."""
    data = _data_slot.__get__(tensor)
    return data.value if type(data) is Traced else None


def _refuse(what: str) -> Callable:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise value_read(what) if what.startswith(".") else TraceError(f"{what} ({user_site()})")

    return refuse


@contextlib.contextmanager
def recording(recorder: Recorder, tensor_class: type, backends: list[Any]) -> Iterator[None]:
    """Within the block every backend records and every tensor hands out stand-ins.

    Each backend's ``xp`` becomes a `RecordingNamespace`; its ``RECORDED_METHODS``
    (work written with its own library, such as scatter-add) are recorded as one
    instruction each; copying to the host and drawing random numbers are refused.
    """
    global _active, _data_slot, _grad_slot
    if _active is not None:
        raise TraceError("a compiled step was called while another one was being traced")
    _data_slot, _grad_slot = tensor_class.__dict__["data"], tensor_class.__dict__["grad"]
    patched = []
    for backend in backends:
        saved = {name: backend.__dict__[name] for name in ("xp",) if name in backend.__dict__}
        patched.append((backend, saved))
        patches = {"xp": RecordingNamespace(backend.xp)}
        for name in backend.RECORDED_METHODS:
            method = getattr(backend, name)
            patches[name] = lambda *a, method=method, name=name: _record(method, a, {}, name)
        patches["to_host"] = _refuse(".numpy() (a copy to the host)")
        for name in ("uniform", "normal"):
            patches[name] = _refuse("drawing random numbers inside a compiled step")
        backend.__dict__.update(patches)
    _active = recorder
    tensor_class.data, tensor_class.grad = _DataDescriptor(), _GradDescriptor()
    try:
        yield
    finally:
        tensor_class.data, tensor_class.grad = _data_slot, _grad_slot
        _active = None
        for backend, saved in patched:
            for name in ("xp", "to_host", "uniform", "normal", *backend.RECORDED_METHODS):
                backend.__dict__.pop(name, None)
            backend.__dict__.update(saved)
