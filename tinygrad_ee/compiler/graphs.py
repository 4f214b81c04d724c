"""Replaying a program through device graphs (CUDA): captured once, then launched.

Each GPU call is a launch costing microseconds, and a recurrent step makes thousands;
a graph launches a captured run of them at once. The program's lines (emit.py) are cut
into segments at the calls the backend cannot capture (cuBLAS products), which run
between the graphs into buffers of their own (``fixed`` in `emit.plan`). Every array a
graph uses stays where it was (in ``env``; inputs are copied in); capture runs no
kernels, so a warm-up on copies of the tensors' arrays comes first; host numbers baked
into kernels (``lr``) are compared at each call, a change captures again; checks are
made after the launch. If any of it fails, plain calls from then on (why: ``failure``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .emit import Line, Replay, attempt, make_function


class GraphReplay:
    """``run(*parameters)`` like the plain replay, through the backend's graphs."""

    def __init__(self, replay: Replay, backend: Any, graphs: Any) -> None:
        self.plain, self.backend, self.graphs = replay.run, backend, graphs
        self.failure: str | None = None
        self.parameters = [(replay.local[v], v.kind) for v in replay.program.parameters]
        self.returned = replay.program.returned
        self.local = replay.local
        groups: list[tuple[str, list[Line]]] = []  # ("segment" | "call", lines)
        checks = []
        for line in replay.lines:
            ins = line.instruction
            if ins is not None and ins.out is None:
                checks.append(line)
            elif ins is None or backend.capturable(ins.fn):
                if not groups or groups[-1][0] != "segment":
                    groups.append(("segment", []))
                groups[-1][1].append(line)
            else:
                if backend.with_out(ins.fn) is None:
                    self.failure = f"{ins.name} can neither be captured nor write into an array"
                groups.append(("call", [line]))
        self.steps = [(kind, _on_env(lines, replay.bound)) for kind, lines in groups]
        self.checks = _on_env(checks, replay.bound)
        self.env: dict[str, Any] = {}  # every array the graphs use, by name
        self.launch: Callable[[], None] | None = None

    def __call__(self, *arguments: Any) -> tuple:
        hosts = [(n, a) for (n, kind), a in zip(self.parameters, arguments) if kind == "host"]
        if self.failure is None and (not self.launch or any(self.env[n] != a for n, a in hosts)):
            attempt(self, self._capture, arguments)  # the first call, or a new host number
        if self.failure is not None:
            return self.plain(*arguments)
        env = self.env
        for (name, kind), array in zip(self.parameters, arguments):
            if kind == "input":
                self.backend.copy_into(env[name], array)
        self.launch()
        self.checks(env)
        found = [env[self.local[v]] if v in self.local else v.constant for v in self.returned]
        return tuple(self.backend.copy(array) for array in found)

    def _capture(self, arguments: tuple) -> None:
        copy = self.backend.copy
        # Warm-up on copies: kernels get compiled and the memory pool filled, while the
        # tensors keep their values (capture does not run kernels; this does).
        warm = {n: a if k == "host" else copy(a) for (n, k), a in zip(self.parameters, arguments)}
        with self.graphs.recording():
            for _, run in self.steps:
                run(warm)
        del warm
        env = {n: copy(a) if k == "input" else a for (n, k), a in zip(self.parameters, arguments)}
        launches = []
        with self.graphs.recording():
            for kind, run in self.steps:
                if kind == "segment":
                    launches.append(self.graphs.capture(lambda run=run: run(env), env).launch)
                else:
                    run(env)  # on arrays the graphs have not filled yet: only their addresses
                    launches.append(lambda run=run: run(env))

        def launch() -> None:
            for each in launches:
                each()

        self.env, self.launch = env, launch


def _on_env(lines: list[Line], bound: dict) -> Callable[[dict], None]:
    """The lines as a function of ``env``: the names they read come from it, the names
    they define go back into it."""
    loads, defined = [], []
    for line in lines:
        loads += [name for name in line.reads if name not in defined and name not in loads]
        defined += [line.defines] if line.defines else []
    body = [f"{name} = E[{name!r}]" for name in loads] + [line.text for line in lines]
    body += [f"E[{name!r}] = {name}" for name in defined] or ["pass"]
    return make_function("segment", ["E"], body, bound)[0]
