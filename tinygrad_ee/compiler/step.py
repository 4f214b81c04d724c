"""Compiled steps (``tg.compile``): trace a whole training step once, then replay it.

The first call with new argument shapes traces the step (trace.py), which puts every
tensor back as it was; `build` turns the program into one Python function, which then
runs the step, the first one too. Later calls check the guards and run the function.
Programs are keyed on the arguments (shapes, dtypes, devices, Python values); numbers
read through `hooks.host_scalar` are read at each call; the rest is frozen and
guarded: the arrays of the tensors the step touches, the ``.grad`` it found, the
optimisers' parameter lists, the modules' structure.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable
from typing import Any

from .. import anomaly, nn, tensor
from ..backend import _BACKENDS, get_backend
from ..tensor import Tensor
from . import passes
from .emit import Replay, emit
from .graphs import GraphReplay
from .hooks import TraceError
from .ir import Program, leaves, tree_map
from .passes import Options
from .trace import Recorder, Trace, tracing

MAX_PROGRAMS = 16  # per step; the oldest is dropped beyond (e.g. many sequence lengths)


def compile(fn: Callable | None = None, **options: bool) -> Any:  # noqa: A001
    """``fn`` (a whole step of Tensors and hashable values) compiled; as ``tg.compile(fn)``,
    ``@tg.compile`` or ``@tg.compile(dead_code=False)`` (`passes.Options`). Python
    numbers ``fn`` reads from elsewhere than its arguments are frozen at the first call."""
    settings = Options(**options)
    if fn is None:
        return lambda fn: CompiledStep(fn, settings)
    return CompiledStep(fn, settings)


def build(program: Program, backend: Any, options: Options) -> Replay:
    """The compiler's pipeline: optimise, plan and emit, and on a backend with device
    graphs, replay through them."""
    program = passes.optimise(program, backend, options)
    graphs = backend.graphs() if options.cuda_graph else None
    fixed = set()
    if graphs is not None:  # calls between graphs write where they wrote when captured
        fixed = {i.out for i in program.instructions if not backend.capturable(i.fn)} - {None}
    replay = emit(program, backend, options.reuse_buffers, fixed)
    if graphs is not None:
        replay.run = GraphReplay(replay, backend, graphs)
    return replay


class CompiledStep:
    """``fn`` traced once per argument signature, then replayed (see the module)."""

    def __init__(self, fn: Callable, options: Options) -> None:
        self.fn = fn
        self.options = options
        self._programs: dict[Any, list[_Program]] = {}
        self.traces = 0  # how many times fn ran eagerly to (re)trace

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        key = (_signature(args), _signature(kwargs), anomaly.enabled, tensor.is_grad_enabled())
        programs = self._programs.setdefault(key, [])
        for step in list(programs):
            state = step.guards_hold()
            if state is True:
                return step.replay(args, kwargs)
            if state == "stale":  # its tensors have new arrays: it can never run again
                programs.remove(step)
        step = self._trace(args, kwargs)
        programs.insert(0, step)
        if sum(len(p) for p in self._programs.values()) > MAX_PROGRAMS:
            programs.pop()
        return step.replay(args, kwargs)

    def program(self) -> Replay:
        """The most recently traced program: its instructions, buffers and source."""
        return max((p for ps in self._programs.values() for p in ps), key=lambda p: p.number).code

    def source(self) -> str:
        """The generated code of the most recently traced program (for reading)."""
        return self.program().source

    def _trace(self, args: tuple, kwargs: dict) -> _Program:
        """Run ``fn`` once, recording its program; every tensor keeps its array."""
        arguments = [x for x in leaves((args, kwargs)) if isinstance(x, Tensor)]
        backends = list(dict.fromkeys(_BACKENDS.values()))
        fresh = frozenset().union(*(b.fresh_functions for b in backends))
        recorder = Recorder(arguments, fresh)
        with tracing(recorder, backends):
            result = self.fn(*args, **kwargs)
            trace = recorder.finish(result)
        if set(_BACKENDS.values()) - set(backends):
            raise TraceError("a compiled step used a device first seen inside it")
        self.traces += 1
        step = _Program(trace, result, arguments, self.options)
        step.number = self.traces
        return step


def _signature(values: Any) -> Any:
    """What keys a program: each tensor's shape, dtype, device and requires_grad, and
    every other argument itself (it must be hashable)."""
    items = values.items() if isinstance(values, dict) else enumerate(values)
    key = []
    for name, value in items:
        if isinstance(value, Tensor):
            key.append((name, value.shape, str(value.dtype), value.device, value.requires_grad))
        elif isinstance(value, (tuple, list)):
            key.append((name, type(value).__name__, _signature(value)))
        else:
            try:
                hash(value)
            except TypeError:
                raise TypeError(
                    f"a compiled step's arguments must be Tensors or hashable Python values, "
                    f"got {type(value).__name__} for argument {name!r}"
                    + ("; wrap arrays in a Tensor" if hasattr(value, "shape") else "")
                ) from None
            key.append((name, type(value).__name__, value))
    return tuple(key)


class _Program:
    """One traced program of a step, its guards, and how to call it."""

    def __init__(self, trace: Trace, result: Any, arguments: list[Tensor], options) -> None:
        self.arguments, self.hosts = trace.arguments, trace.hosts
        self.grads, self.input_grads = trace.grads, trace.input_grads
        self.states = trace.states
        program = trace.program
        # A tensor the program writes in place gets an array of its own (not a view,
        # not read-only, not another tensor's too) if it has none.
        first = len(trace.arguments)
        written = {state for state, _ in program.writes}
        seen: set[int] = set()
        for t, value in zip(self.states, program.parameters[first:]):
            if value in written and (not t.backend.writable(t.data) or id(t.data) in seen):
                t.data = t.backend.copy(t.data)
            seen.add(id(t.data))
        # Guards: the tensors' arrays and flags, the structure, and the step's own reads.
        self.arrays = [(t, t.data, t.requires_grad) for t in self.states]
        self.state_arrays = [t.data for t in self.states]
        self.guards = [*trace.guards, (nn.structure_version, nn.structure_version())]
        backend = next((t.backend for t in [*arguments, *self.states]), get_backend("cpu"))
        self.code = build(program, backend, options)

        def template(x: Any) -> Any:  # a tensor of the result: one the program returns,
            if isinstance(x, Tensor):  # or an argument
                made = [_Slot(i, x.backend) for i, t in enumerate(trace.returned) if t is x]
                given = [_Slot(i) for i, t in enumerate(arguments) if t is x]
                return (made + given + [x])[0]
            return x

        self.template = tree_map(template, result)

    def guards_hold(self) -> bool | str:
        for t, array, requires_grad in self.arrays:
            if t.data is not array:
                return "stale"
            if t.requires_grad != requires_grad:
                return False
        for read, expected in self.guards:
            now = read()
            tensors = isinstance(now, Tensor) or isinstance(expected, Tensor)  # == elementwise
            if now is not expected and (tensors or now != expected):
                return False
        return True

    def replay(self, args: tuple, kwargs: dict) -> Any:
        arguments = [x for x in leaves((args, kwargs)) if isinstance(x, Tensor)]
        arrays = self.code.run(
            *[arguments[i].data for i in self.arguments],
            *self.state_arrays,  # guards_hold checked that the tensors hold them
            *[read() for read in self.hosts],
        )
        for t, grad in self.grads:
            t.grad = grad
        new_grads = iter(arrays[len(arrays) - sum(made for _, made, _ in self.input_grads) :])
        for position, made, grad in self.input_grads:
            x = arguments[position]
            x.grad = Tensor._make(next(new_grads), x.backend) if made else grad

        def fill(x: Any) -> Any:
            if type(x) is not _Slot:
                return x
            return Tensor._make(arrays[x.index], x.backend) if x.backend else arguments[x.index]

        return tree_map(fill, self.template)


# Where a step's result holds a tensor: the index-th the program returns (on backend),
# or else the index-th tensor argument.
_Slot = namedtuple("_Slot", "index backend", defaults=(None,))
