"""Compiled steps: trace a whole training step once, then replay its array program.

    @tg.compile
    def train_step(x, y):
        optimizer.zero_grad()
        loss = model.loss(x, y)
        loss.backward()
        optimizer.step()
        return loss

    for x, y in batches:
        loss = train_step(x, y)      # 1st call: eager, recorded; then replayed

The first call with given argument shapes runs ``fn`` eagerly while `tracing.py`
records every array call of the forward pass, the backward walk and the optimiser (and
then puts every tensor back as it was); `program.py` optimises that program and turns it
into one Python function, which runs the step. Later calls check the guards and run
that function on the new arguments' arrays: no tensors, no closures, no graph walk, no
dtype checks. Every call's result is the program's, the first one's too, so a run that
is resumed from a checkpoint (and traces again) computes what an uninterrupted run
does, bit for bit. Parameters, gradients and optimiser state stay in their
tensors' own arrays, which each call updates in place, so ``state_dict()``,
checkpoints and ``.grad`` always see the current values.

What a program depends on, and how a change reaches it:

- the arguments: Tensors (their arrays are swapped in at each call) and hashable
  Python values; their shapes, dtypes, devices and the Python values key the
  programs, so a new shape (a smaller last batch) gets a program of its own;
- numbers read through `tracing.host_scalar` (an optimiser's ``lr``): read again at
  every call;
- everything else is frozen into the program and guarded: the arrays of the tensors
  it reads and writes (``load_state_dict`` replaces them: retrace), which ``.grad``
  the step found, the optimisers' parameter lists, and the modules' structure (a
  parameter added or replaced anywhere: retrace);
- a Python branch on a tensor's value (``.item()``, ``bool()``, ``.numpy()``) cannot
  be replayed: tracing refuses it with `TraceError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import anomaly, nn, replay, tensor, tracing
from .backend import _BACKENDS
from .captured import GraphReplay
from .program import Options
from .tensor import Tensor

MAX_PROGRAMS = 16  # per step; the oldest is dropped beyond (e.g. many sequence lengths)


def compile(fn: Callable | None = None, **options: bool) -> Any:  # noqa: A001
    """A compiled version of ``fn``, a function of Tensors and hashable Python values
    that does a whole step (usually loss, ``backward()``, ``optimizer.step()``).

    Usable as ``tg.compile(fn)``, ``@tg.compile`` or ``@tg.compile(dead_code=False)``;
    the keyword arguments switch off optimisations (`program.Options`). ``fn`` must
    take everything that changes between calls as arguments, or read it from tensors
    that the step itself updates; Python numbers it reads from elsewhere are frozen at
    the first call (pass them as arguments, so that they key the program).
    """
    settings = Options(**options)
    if fn is None:
        return lambda fn: CompiledStep(fn, settings)
    return CompiledStep(fn, settings)


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

    def program(self) -> replay.Replay:
        """The most recently traced program: its instructions, buffers and source."""
        latest = max((p for ps in self._programs.values() for p in ps), key=lambda p: p.number)
        return latest.replay_code

    def source(self) -> str:
        """The generated code of the most recently traced program (for reading)."""
        return self.program().source

    def _trace(self, args: tuple, kwargs: dict) -> _Program:
        """Run ``fn`` once, recording its program; the tensors keep their arrays."""
        inputs = [x for x in _flatten((args, kwargs)) if isinstance(x, Tensor)]
        backends = list(dict.fromkeys(_BACKENDS.values()))
        fresh = frozenset().union(*(b.fresh_functions for b in backends))
        recorder = tracing.Recorder(inputs, fresh.__contains__)
        with tracing.recording(recorder, Tensor, backends):
            result = self.fn(*args, **kwargs)
            outputs = _outputs(result)
            returned = [tracing.tensor_value(t) for kind, t in outputs if kind == "new"]
        if set(_BACKENDS.values()) - set(backends):
            raise tracing.TraceError("a compiled step used a device first seen inside it")
        self.traces += 1
        trace = recorder.finish(result)
        step = _Program(trace, inputs, outputs, returned, self.options)
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


def _flatten(x: Any) -> list:
    if isinstance(x, (tuple, list)):
        return [item for part in x for item in _flatten(part)]
    if isinstance(x, dict):
        return [item for part in x.values() for item in _flatten(part)]
    return [x]


def _outputs(result: Any) -> list[tuple[str, Any]]:
    """The step's returned tensors: ("new", t) made in the step, ("same", t) made before."""
    found = []
    for item in _flatten(result):
        if isinstance(item, Tensor):
            found.append(("new" if tracing.tensor_value(item) is not None else "same", item))
    return found


class _Program:
    """One traced program of a step, its guards, and how to call it."""

    def __init__(self, trace: tracing.Trace, inputs, outputs, returned, options) -> None:
        self.template = _template(trace.result, outputs, inputs)
        self.used_inputs = [i for i, value in enumerate(trace.inputs) if value is not None]
        self.states = [t for t, _ in trace.states]
        read = {id(t) for t in self.states}
        self.write_only = [t for t, _ in trace.writes if id(t) not in read]
        self.hosts = [read for _, read in trace.hosts]
        self.grads = trace.grads
        self.input_grads = trace.input_grads
        returned = returned + [value for _, value, _ in trace.input_grads if value is not None]
        # Guards: the tensors' arrays and flags, the structure, and the step's own reads.
        touched = self.states + self.write_only
        self.arrays = [(t, t.data, t.requires_grad) for t in touched]
        # what a replay passes for them: the arrays the guards hold them to
        self.state_arrays = [t.data for t in self.states]
        self.write_arrays = [t.data for t in self.write_only]
        self.guards = [*trace.guards, (nn.structure_version, nn.structure_version())]
        parameters = [trace.inputs[i] for i in self.used_inputs]
        parameters += [value for _, value in trace.states]
        parameters += [value for value, _ in trace.hosts]
        names = {id(t): repr(v) for t, v in trace.states}
        names.update({id(t): f"w{i}" for i, t in enumerate(self.write_only)})
        entries = {id(t): v for t, v in trace.states}
        targets = [(names[id(t)], value, entries.get(id(t))) for t, value in trace.writes]
        backend = next((t.backend for t in [*inputs, *touched]), _BACKENDS.get("cpu"))
        self.replay_code = replay.build(
            trace.instructions,
            parameters,
            [names[id(t)] for t in self.write_only],
            returned,
            targets,
            backend,
            options,
        )
        if options.cuda_graph and backend.graphs() is not None:
            try:
                self.replay_code.run = GraphReplay(self.replay_code, backend)
            except Exception as error:  # a program graphs cannot run: plain calls (and why)
                self.replay_code.run.failure = f"{type(error).__name__}: {error}"

    def guards_hold(self) -> bool | str:
        for t, array, requires_grad in self.arrays:
            if t.data is not array:
                return "stale"
            if t.requires_grad != requires_grad:
                return False
        for read, expected in self.guards:
            now = read()
            if now is not expected and not _same(now, expected):
                return False
        return True

    def replay(self, args: tuple, kwargs: dict) -> Any:
        inputs = [x for x in _flatten((args, kwargs)) if isinstance(x, Tensor)]
        arguments = [inputs[i].data for i in self.used_inputs]
        arguments += self.state_arrays  # guards_hold checked that the tensors hold them
        arguments += [read() for read in self.hosts]
        arguments += self.write_arrays
        arrays = self.replay_code.run(*arguments)
        for t, grad in self.grads:
            t.grad = grad
        if self.input_grads:
            new = sum(v is not None for _, v, _ in self.input_grads)
            new_grads = iter(arrays[len(arrays) - new :])
            for position, value, grad in self.input_grads:
                x = inputs[position]
                x.grad = grad if value is None else Tensor._make(next(new_grads), x.backend)
        return _fill(self.template, arrays, inputs)


def _same(now: Any, then: Any) -> bool:
    if now is then:
        return True
    return not isinstance(now, Tensor) and not isinstance(then, Tensor) and now == then


class _Returned:
    """Where the template of a step's result holds its ``index``-th new tensor."""

    def __init__(self, index: int, backend: Any) -> None:
        self.index, self.backend = index, backend


class _Argument:
    """Where the template of a step's result holds the step's ``index``-th tensor argument."""

    def __init__(self, index: int) -> None:
        self.index = index


def _template(result: Any, outputs: list[tuple[str, Any]], inputs: list[Tensor]) -> Any:
    """The step's result with each tensor made in it replaced by a `_Returned` (keeping
    the tensors themselves would keep their graph alive) and each argument by an
    `_Argument`."""
    new = [t for kind, t in outputs if kind == "new"]

    def replace(x: Any) -> Any:
        if isinstance(x, Tensor):
            index = next((i for i, t in enumerate(new) if t is x), None)
            if index is not None:
                return _Returned(index, x.backend)
            argument = next((i for i, t in enumerate(inputs) if t is x), None)
            return x if argument is None else _Argument(argument)
        if isinstance(x, (tuple, list)):
            return type(x)(replace(item) for item in x)
        if isinstance(x, dict):
            return {key: replace(item) for key, item in x.items()}
        return x

    return replace(result)


def _fill(template: Any, arrays: tuple, inputs: list[Tensor]) -> Any:
    if isinstance(template, _Returned):
        return Tensor._make(arrays[template.index], template.backend)
    if isinstance(template, _Argument):
        return inputs[template.index]
    if isinstance(template, (tuple, list)):
        return type(template)(_fill(item, arrays, inputs) for item in template)
    if isinstance(template, dict):
        return {key: _fill(item, arrays, inputs) for key, item in template.items()}
    return template
