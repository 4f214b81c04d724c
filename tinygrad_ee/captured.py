"""Replaying a program through device graphs: captured once, then launched.

On a GPU each array call is a kernel launch, a few microseconds of Python and driver
work each, and a recurrent training step makes thousands. A backend with device graphs
(`Backend.graphs`, CUDA) records the kernels of a program once and launches them again
with one call per graph. Calls a backend cannot capture (CuPy refuses cuBLAS products
during capture) run between the graphs, into the arrays they wrote when captured.

What this needs, and how it is kept:

- every array a graph reads or writes stays at its address: the values are kept alive
  in ``env``, and each call's inputs are copied into arrays made when capturing;
- capture does not run the kernels, so before capturing the program runs once on
  copies of the tensors' arrays (to compile kernels and fill the memory pool);
- numbers baked into kernels (host scalars such as ``lr``) are compared at each call:
  a change captures again;
- checks (an index out of range) are evaluated after the launch: a graph cannot stop.

If anything of this fails, the program runs as plain calls from then on; the reason is
kept in ``failure``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .program import Names
from .replay import Plan, Replay, statement
from .tracing import Value


class GraphReplay:
    """``run(*arguments)`` like the plain replay, through the backend's graphs."""

    def __init__(self, replay: Replay, backend: Any) -> None:
        self.plain, self.backend = replay.run, backend
        self.returned = [_reader(v) for v in replay.returned]
        self.names = [repr(v) for v in replay.parameters] + replay.target_parameters
        kinds = [v.kind for v in replay.parameters]
        self.kinds = kinds + ["target"] * len(replay.target_parameters)
        self.steps, self.checks = _segments(replay.instructions, replay.plan, backend, replay.bound)
        self.failure: str | None = None
        self.env: dict[str, Any] | None = None
        self.launch: Callable[[], None] | None = None
        self.graphs = backend.graphs()

    def __call__(self, *arguments: Any) -> tuple:
        if self.failure is not None:
            return self.plain(*arguments)
        if self.launch is None or not self._still_valid(arguments):
            try:
                self._capture(arguments)
            except Exception as error:  # the library's own errors, whatever their type
                self.failure = f"{type(error).__name__}: {error}"
                self.env = self.launch = None
                return self.plain(*arguments)
        env, copy_into = self.env, self.backend.copy_into
        for name, kind, array in zip(self.names, self.kinds, arguments):
            if kind == "input":
                copy_into(env[name], array)
        self.launch()
        for ok, error, arrays in self.checks:
            if not bool(ok(env)):
                raise error(*[read(env) for read in arrays])
        return tuple(self.backend.copy(read(env)) for read in self.returned)

    def _still_valid(self, arguments: tuple) -> bool:
        """The same tensors' arrays and the same host numbers as when captured."""
        env = self.env
        for name, kind, array in zip(self.names, self.kinds, arguments):
            if kind in ("state", "target") and env[name] is not array:
                return False
            if kind == "host" and env[name] != array:
                return False
        return True

    def _capture(self, arguments: tuple) -> None:
        backend = self.backend
        # Warm-up on copies: kernels get compiled and the memory pool filled, while the
        # tensors keep their values (capture does not run kernels; this does).
        warm = {}
        for name, kind, array in zip(self.names, self.kinds, arguments):
            copied = kind in ("input", "state", "target")
            warm[name] = backend.copy(array) if copied else array
        with self.graphs.recording():
            for _, run in self.steps:
                run(warm)
        del warm
        env = {}
        for name, kind, array in zip(self.names, self.kinds, arguments):
            env[name] = backend.copy(array) if kind == "input" else array
        graphs, calls = [], []
        with self.graphs.recording():
            for kind, run in self.steps:
                if kind == "segment":
                    graphs.append(self.graphs.capture(lambda run=run: run(env), env))
                    calls.append(("graph", graphs[-1]))
                else:
                    run(env)  # on arrays the graphs have not filled yet: only their addresses
                    calls.append(("call", run))
        self.env = env
        self.launch = _launcher(calls, env)


def _launcher(calls: list[tuple[str, Any]], env: dict[str, Any]) -> Callable[[], None]:
    def launch() -> None:
        for kind, item in calls:
            if kind == "graph":
                item.launch()
            else:
                item(env)

    return launch


def _segments(instructions, plan: Plan, backend: Any, bound: dict[str, Any]):
    """The program as steps ("segment", run(env)) of capturable instructions and ("call",
    run(env)) of single calls between them, and its checks (ok, error, arguments), each
    a function of env."""
    names = Names()
    names.bind(bound)
    ref = lambda name: f"E[{name!r}]"  # noqa: E731
    steps, lines, checks = [], [], []

    def close() -> None:
        if lines:
            steps.append(("segment", _function(lines, names)))
            lines.clear()

    for ins in instructions:
        if ins.out is None:
            ok, *arrays = (_reader(a) for a in ins.args)
            checks.append((ok, ins.error, arrays))
            continue
        line = statement(ins, names, plan, backend, ref)
        if backend.capturable(ins.fn):
            lines.append(line)
            continue
        close()
        call = [line]
        if plan.storage.get(ins.out) is None:  # it must write where it wrote when captured
            if backend.with_out(ins.fn) is None:
                raise ValueError(f"{ins.name} can neither be captured nor write into an array")
            into = statement(ins, names, Plan(storage={ins.out: repr(ins.out)}), backend, ref)
            call = [f"if {repr(ins.out)!r} in E:", f"    {into}", "else:", f"    {line}"]
        steps.append(("call", _function(call, names)))
    copy = names.of(backend.copy_into, "f")
    for target, value in plan.copies:
        lines.append(f"{copy}({ref(target)}, {ref(repr(value))})")
    close()
    return steps, checks


def _reader(x: Any) -> Callable[[dict], Any]:
    if isinstance(x, Value) and x.kind != "const":
        name = repr(x)
        return lambda env: env[name]
    constant = x.constant if isinstance(x, Value) else x
    return lambda env: constant


def _function(lines: list[str], names: Names) -> Callable[[dict], None]:
    signature = ["E"] + [f"{name}={name}" for name in names.bound]
    source = f"def run({', '.join(signature)}):\n" + "".join(f"    {line}\n" for line in lines)
    namespace = dict(names.bound)
    exec(compile(source, "<captured step>", "exec"), namespace)  # noqa: S102
    return namespace["run"]
