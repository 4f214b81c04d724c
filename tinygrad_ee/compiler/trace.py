"""Tracing: run a step once, eagerly, while recording every array call it makes.

Within `tracing`, each backend's ``xp`` records and ``Tensor.data`` and ``.grad`` are
watched. A read of ``.data`` hands out a `Traced` stand-in: the real array (the step
runs as it would eagerly) and its `Value`, an input (a step argument) or a state (a
tensor made before the step). Every call touching a stand-in is appended to the
program and returns a new one; what the step leaves in a tensor is what the program
writes there. A trace only records: however it ends (a return, `TraceError`, a user's
exception, Ctrl-C), every tensor it touched gets its ``.data`` and ``.grad`` back.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..tensor import DATA, GRAD, Tensor, watched
from . import hooks
from .hooks import TraceError, user_site, value_read
from .ir import Instruction, Program, Value, is_array, leaves, setitem, tree_map


class Traced:
    """An array or Python number computed while tracing: the real one, and its Value."""

    __slots__ = ("array", "value", "__weakref__")
    __hash__ = object.__hash__  # == is elementwise, as for arrays
    __array_ufunc__ = None  # NumPy's operators defer to ours (a + traced -> traced.__radd__)

    def __init__(self, array: Any, value: Value) -> None:
        self.array, self.value = array, value

    def __repr__(self) -> str:
        return f"Traced({self.value!r}, shape={getattr(self.array, 'shape', None)})"

    def __len__(self) -> int:
        return self.array.shape[0]

    def __getattr__(self, name: str) -> Any:
        # Array methods (x.reshape(...), x.T) are recorded, metadata (shape, dtype) passes
        # through; protocols (__array_interface__, ...) would hand out the real data.
        if name.startswith("__"):
            raise AttributeError(name)
        attribute = getattr(self.array, name)
        if callable(attribute):
            return lambda *args, **kwargs: _record(
                operator.methodcaller(name, *args, **kwargs), (self,), {}, f".{name}()"
            )
        if is_array(attribute):
            return _record(operator.attrgetter(name), (self,), {}, f".{name}")
        return attribute

    def __getitem__(self, index: Any) -> Traced:
        return _record(operator.getitem, (self, index), {}, "getitem")

    def __setitem__(self, index: Any, value: Any) -> None:
        self._rebind(_record(setitem, (self, index, value), {}, "setitem"))

    def _rebind(self, result: Traced) -> Traced:
        """An in-place update: this stand-in now holds the new value."""
        if not is_array(result.array) or result.shape != self.shape:
            raise TraceError(f"an in-place operation changed the shape of {self!r}")
        if result.dtype != self.dtype:
            raise TraceError(
                f"an in-place operation changed the dtype of {self!r} "
                f"({self.dtype} -> {result.dtype}): convert explicitly"
            )
        self.array, self.value = result.array, result.value
        return self


# Reading a value in Python is what a replay cannot do.
_REFUSED = {
    "__bool__": "bool() of an array",
    "__float__": "float() of an array",
    "__int__": "int() of an array",
    "__index__": "int() of an array",
    "__iter__": "iterating over an array",
    "__array__": "converting an array to NumPy",
    "item": ".item()",
    "tolist": ".tolist()",
}


def _refuse(what: str, read: bool = True) -> Callable:
    """A method that raises: for reading a value (`value_read`), or for ``what``."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise value_read(what) if read else TraceError(f"{what} ({user_site()})")

    return refuse


def _install() -> None:
    """Traced's operators, each recorded, and its refusals."""
    for method, what in _REFUSED.items():
        setattr(Traced, method, _refuse(what))
    binary = "add sub mul truediv floordiv mod pow matmul and or xor".split()
    for name in binary:
        fn = getattr(operator, f"{name}_" if name in ("and", "or") else name)
        setattr(Traced, f"__{name}__", lambda a, b, fn=fn, n=name: _record(fn, (a, b), {}, n))
        setattr(Traced, f"__r{name}__", lambda a, b, fn=fn, n=name: _record(fn, (b, a), {}, n))
        inplace = lambda a, b, fn=fn, n=name: a._rebind(_record(fn, (a, b), {}, n))  # noqa: E731
        setattr(Traced, f"__i{name}__", inplace)
    for name in "lt le gt ge eq ne neg pos abs invert".split():
        fn = getattr(operator, name)
        setattr(Traced, f"__{name}__", lambda *a, fn=fn, n=name: _record(fn, a, {}, n))


_install()


def _real(x: Any) -> Any:
    return x.array if type(x) is Traced else x


def _record(fn: Callable, args: tuple, kwargs: dict, name: str) -> Any:
    if hooks.active is None:  # a stand-in outlived its trace
        raise TraceError(f"{name}: an array of a finished trace was used")
    return hooks.active.call(fn, args, kwargs, name)


class RecordingNamespace:
    """A backend's ``xp`` during a trace: each function call is recorded."""

    def __init__(self, xp: Any) -> None:
        self._xp = xp

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._xp, name)
        if not callable(attribute) or isinstance(attribute, type):
            return attribute  # dtypes, constants, classes
        return lambda *args, **kwargs: _record(attribute, args, kwargs, name)


@dataclass
class Trace:
    """What a trace hands step.py: the program, whose parameters are the arrays of the
    arguments at ``arguments``, of the tensors ``states``, and the numbers ``hosts``
    read; ``grads``: (tensor, its ``.grad`` after a call); ``input_grads``: (argument,
    whether the program returns its ``.grad`` after ``returned``, else what it is)."""

    program: Program
    arguments: list[int]
    hosts: list[Callable[[], Any]]
    states: list[Tensor]
    grads: list[tuple[Tensor, Any]]
    input_grads: list[tuple[int, bool, Any]]
    returned: list[Tensor]
    guards: list[tuple[Callable[[], Any], Any]]


class Recorder:
    """The program of one trace as it is recorded, and what it touched. ``fresh``: the
    functions whose results never share memory with their arguments."""

    def __init__(self, arguments: list[Tensor], fresh: frozenset) -> None:
        self.arguments = arguments
        self.position = {id(t): i for i, t in reversed(list(enumerate(arguments)))}
        self.fresh = fresh
        self.instructions: list[Instruction] = []
        self.inputs: dict[int, Value] = {}  # argument -> the value of its array
        self.states: dict[int, Value] = {}  # tensor made before the step -> its read value
        self.constants: dict[int, Value] = {}
        self.hosts: list[tuple[Value, Callable[[], Any]]] = []
        self.guards: list[tuple[Callable[[], Any], Any]] = []
        # each tensor's .data and .grad before the step, noted before it changes them
        self.entries: dict[int, tuple[Tensor, Any]] = {}
        self.grad_entries: dict[int, tuple[Tensor, Any]] = {}
        self.grad_reads: dict[int, tuple[Tensor, Any]] = {}  # .grad read before written
        self.created: dict[int, Tensor] = {}  # tensors made during the trace
        self.running = False  # a recorded function is running: its own calls are not

    def constant(self, array: Any) -> Value:
        if id(array) not in self.constants:  # one value per array (the Value holds it)
            self.constants[id(array)] = Value.like(array, "const")
        return self.constants[id(array)]

    def refs(self, x: Any) -> Any:
        """``x`` with stand-ins as their Values and other arrays as constants."""

        def ref(leaf: Any) -> Any:
            if type(leaf) is Traced:
                return leaf.value
            return self.constant(leaf) if is_array(leaf) else leaf

        return tree_map(ref, x)

    def call(self, fn: Callable, args: tuple, kwargs: dict, name: str) -> Any:
        if self.running:  # inside a recorded function (a backend method using xp)
            return fn(*args, **kwargs)
        self.running = True
        try:
            result = fn(*tree_map(_real, args), **tree_map(_real, kwargs))
        finally:
            self.running = False
        traced = any(type(x) is Traced for x in leaves((args, kwargs)))
        if not is_array(result) and not (traced and isinstance(result, (int, float))):
            if isinstance(result, (tuple, list)) and any(is_array(r) for r in result):
                raise TraceError(f"{name}: functions returning several arrays are not traced")
            return result
        args, kwargs = self.refs(args), self.refs(kwargs)
        arrays = [v for v in leaves((args, kwargs)) if type(v) is Value and v.shape is not None]
        out = Value.like(result, "op", () if fn in self.fresh else tuple(arrays))
        self.instructions.append(Instruction(fn, args, kwargs, out, name))
        return Traced(result, out)

    def require(self, ok: Any, error: Callable[..., Exception], arrays: tuple) -> None:
        if not bool(_real(ok)):
            raise error(*tree_map(_real, arrays))
        if type(ok) is Traced:
            check = (ok.value, *self.refs(arrays))
            self.instructions.append(Instruction(bool, check, {}, None, "check", error))

    def host(self, read: Callable[[], Any]) -> Traced:
        number = read()
        traced = Traced(number, Value.like(number, "host"))
        self.hosts.append((traced.value, read))
        return traced

    def read_data(self, tensor: Tensor, array: Any) -> Any:
        """What a read of ``tensor.data`` gives: a stand-in (``array`` if it is one)."""
        key = id(tensor)
        if array is None or type(array) is Traced:
            return array
        if key in self.created:  # made in the step from host data: a constant
            return Traced(array, self.constant(array))
        self.entries.setdefault(key, (tensor, array))
        if key in self.position:
            value = self.inputs[key] = Value.like(array, "input")
        else:
            value = self.states[key] = Value.like(array, "state")
        return Traced(array, value)

    def write_data(self, tensor: Tensor, new: Any) -> None:
        key = id(tensor)
        try:
            old = DATA.__get__(tensor)
        except AttributeError:  # a tensor being made
            self.created[key] = tensor
            return
        if key in self.created:
            return
        if key in self.position:
            raise TraceError(
                f"a compiled step assigned to the .data of its argument ({user_site()}); "
                "arguments are read-only in a compiled step"
            )
        if new is not None and type(new) is not Traced:
            raise TraceError(
                "a tensor made before the step was given an array computed outside "
                f"the traced operations ({user_site()}); compute it with tensor ops"
            )
        self.entries.setdefault(key, (tensor, old))

    def read_grad(self, tensor: Tensor, grad: Any) -> Any:
        key = id(tensor)
        if key not in self.created and key not in self.grad_entries:
            self.grad_reads.setdefault(key, (tensor, grad))
        return grad

    def write_grad(self, tensor: Tensor, grad: Any) -> None:
        if id(tensor) not in self.created:
            self.grad_entries.setdefault(id(tensor), (tensor, GRAD.__get__(tensor)))

    def finish(self, result: Any) -> Trace:
        """Describe the program, while the tensors still hold what the step left in them."""
        states, writes, values = [], [], []
        for key, (tensor, entry) in self.entries.items():
            if key in self.position:
                continue
            final = DATA.__get__(tensor)
            read = self.states.get(key)
            state = read or Value.like(entry, "state")
            states.append(tensor)
            values.append(state)
            if type(final) is Traced and final.value is not read:
                writes.append((state, final.value))
        grads, input_grads, returned_grads = [], [], []
        for key, (tensor, _) in self.grad_entries.items():
            grad = GRAD.__get__(tensor)
            data = DATA.__get__(grad) if id(grad) in self.created else None
            made = type(data) is Traced  # a gradient computed in the step
            if key in self.position:
                input_grads.append((self.position[key], made, None if made else grad))
                if made:
                    returned_grads.append(data.value)
                continue
            grads.append((tensor, grad))
            if made:  # the program writes it into an array of the gradient tensor's own
                DATA.__set__(grad, tensor.backend.copy(data.array))
                states.append(grad)
                values.append(Value.like(DATA.__get__(grad), "state"))
                writes.append((values[-1], data.value))
        tensors = [t for t in leaves(result) if isinstance(t, Tensor)]
        returned = [t for t in tensors if type(DATA.__get__(t)) is Traced]
        arguments = sorted(self.position[key] for key in self.inputs)  # the arguments read
        inputs = [self.inputs[id(self.arguments[i])] for i in arguments]
        program = Program(
            self.instructions,
            inputs + values + [value for value, _ in self.hosts],
            [DATA.__get__(t).value for t in returned] + returned_grads,
            writes,
        )
        guards = self.guards + [(lambda t=t: t.grad, g) for t, g in self.grad_reads.values()]
        hosts = [read for _, read in self.hosts]
        return Trace(program, arguments, hosts, states, grads, input_grads, returned, guards)

    def restore(self) -> None:
        """Every tensor as it was before the step: its ``.data`` and ``.grad`` objects."""
        for tensor, array in self.entries.values():
            DATA.__set__(tensor, array)
        for tensor, grad in self.grad_entries.values():
            GRAD.__set__(tensor, grad)
        for tensor in self.created.values():  # no stand-in may outlive the trace
            data = getattr(tensor, "data", None)
            if type(data) is Traced:
                DATA.__set__(tensor, data.array)


def _watched(slot: Any, read: Callable, write: Callable) -> property:
    """A field of every tensor during a trace (`tensor.watched`), kept in ``slot`` (the
    field's own descriptor, `tensor.DATA` or `tensor.GRAD`): ``read(tensor, held)`` says
    what a read gives (the field then holds it), ``write(tensor, value)`` sees writes."""

    def get(tensor: Any) -> Any:
        held = slot.__get__(tensor)
        seen = read(tensor, held)
        if seen is not held:
            slot.__set__(tensor, seen)
        return seen

    def put(tensor: Any, value: Any) -> None:
        write(tensor, value)
        slot.__set__(tensor, value)

    return property(get, put)


@contextlib.contextmanager
def tracing(recorder: Recorder, backends: list[Any]) -> Iterator[None]:
    """Within the block every backend records (its ``xp``, and its ``RECORDED_METHODS``
    as one instruction each; host copies and random numbers refused) and every tensor
    is watched; at its end, however it ends, both are put back (`Recorder.restore`)."""
    if hooks.active is not None:
        raise TraceError("a compiled step was called while another one was being traced")
    saved = [(backend, dict(backend.__dict__)) for backend in backends]
    try:
        for backend in backends:
            patches = {"xp": RecordingNamespace(backend.xp)}
            for name in backend.RECORDED_METHODS:
                method = getattr(backend, name)
                patches[name] = lambda *a, method=method, name=name: _record(method, a, {}, name)
            patches["to_host"] = _refuse(".numpy() (a copy to the host)")
            refused = _refuse("drawing random numbers inside a compiled step", read=False)
            patches["uniform"] = patches["normal"] = refused
            backend.__dict__.update(patches)
        hooks.active = recorder
        data = _watched(DATA, recorder.read_data, recorder.write_data)
        grad = _watched(GRAD, recorder.read_grad, recorder.write_grad)
        with watched(data, grad):
            yield
    finally:
        hooks.active = None
        recorder.restore()
        for backend, attributes in saved:
            backend.__dict__.clear()
            backend.__dict__.update(attributes)
