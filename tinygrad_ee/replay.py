"""The Python function that replays a program: where each result goes, and the code.

`build` runs the optimisation passes (program.py) on the instructions of a trace
(tracing.py), plans the buffers, and returns a `Replay`: a Python function generated
from the program, one line per array call, with no tensors, closures or graph walk
left::

    v12 = f3(v4, v7, out=b2)      # linear's product, into a reused buffer
    v13 = f5(v12, v8, out=v12)    # + bias, in place: v12 is not needed after this

With ``reuse_buffers`` (`program.Options`) results are written with ``out=`` into
buffers allocated once and reused as soon as the values they held are dead (or into an
argument that dies at that instruction); new parameter values go straight into the
parameters' own arrays, and the parts of a concatenation straight into their slice of
it. Backends without ``out=`` (array-api-strict) replay functionally. Each result is
freed (``del``) as soon as nothing needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .program import (
    Names,
    Options,
    eliminate_dead_code,
    fold_casts,
    fold_constants,
    fuse_elementwise,
    merge_duplicates,
    producer_of,
    stack_products,
    type_numbers,
)
from .tracing import Instruction, Value, values_in


@dataclass
class Replay:
    """A program ready to run: ``run(*arguments)`` returns the output arrays.
    ``bound``: the objects ``source`` names (functions, constants, ``buffers``)."""

    run: Callable[..., tuple]
    source: str
    instructions: list[Instruction]
    buffers: list[Any]
    bound: dict[str, Any]
    # what the function was generated from (captured.py replays the same program)
    plan: Plan
    parameters: list[Value]
    target_parameters: list[str]
    returned: list[Value]


def _last_uses(instructions: list[Instruction], outputs: list[Value]) -> dict[Value, int]:
    """Index of the last instruction that needs each value (len(instructions) for
    outputs). A value that may be a view keeps the values it views alive as long."""
    last: dict[Value, int] = {}
    for i, ins in enumerate(instructions):
        for value in values_in((ins.args, ins.kwargs)):
            last[value] = i
    for value in outputs:
        last[value] = len(instructions)
    for ins in reversed(instructions):
        value = ins.out
        if value is not None and value.views and value in last:
            for viewed in value.views:
                last[viewed] = max(last.get(viewed, -1), last[value])
    return last


@dataclass
class Plan:
    """Where each result is written: a name in the generated code (a buffer ``b3``, a
    parameter's own array, or a dead argument's array), or absent (the call allocates)."""

    storage: dict[Value, str] = field(default_factory=dict)
    buffers: list[tuple[tuple[int, ...], Any]] = field(default_factory=list)
    copies: list[tuple[str, Value]] = field(default_factory=list)  # (target, value) at the end
    # Concatenations whose parts were written in place: value -> the parts copied in
    # at its instruction (the others wrote straight into their slice); see `_assemble`.
    assembled: dict[Value, list[tuple[str, Value]]] = field(default_factory=dict)
    placed: set[Value] = field(default_factory=set)  # storage fixed by `_assemble`


def plan_buffers(
    instructions: list[Instruction],
    outputs: list[Value],
    returned: set[Value],
    targets: list[tuple[str, Value, Value | None]],
    backend: Any,
    reuse: bool,
) -> Plan:
    """Choose where each result goes. ``targets``: (name of a tensor's own array, the
    value to write there, the value it holds on entry or None). A target receives its
    value directly when its old contents are dead by then, else by a copy at the end."""
    plan = Plan()
    last = _last_uses(instructions, outputs)
    target_of = {value: (name, entry) for name, value, entry in targets}
    if reuse:
        _assemble(instructions, plan, set(returned) | set(target_of), backend)
    pinned: set[Value] = set()
    free: dict[tuple, list[str]] = {}
    owner: dict[str, Value] = {}  # buffer name -> value whose storage it is

    def place(i: int, ins: Instruction) -> None:
        value = ins.out
        if not reuse or value is None or value in returned or value.views or not value.contiguous:
            return
        if value in plan.placed:
            return
        if value.shape == ():  # NumPy computes on 0-d results as scalars (own rounding): keep
            return
        if backend.with_out(ins.fn) is None:
            return
        spec = (value.shape, value.dtype)
        target = target_of.get(value)
        if target is not None and value not in pinned:
            name, entry = target
            if (
                entry is None
                or last.get(entry, -1) < i
                or _can_overwrite(ins, entry, i, last, backend)
            ):
                plan.storage[value] = name
                pinned.add(value)
                return
        for arg in values_in(ins.args):
            if arg in plan.placed:  # its array is part of a concatenation: keep it
                continue
            if _can_overwrite(ins, arg, i, last, backend) and arg.kind == "op" and arg.views == ():
                name = plan.storage.get(arg, repr(arg))
                if owner.get(name, arg) is arg or name == repr(arg):
                    plan.storage[value] = name
                    owner[name] = value
                    return
        pool = free.get(spec)
        if pool:
            name = pool.pop()
        else:
            name = f"b{len(plan.buffers)}"
            plan.buffers.append(spec)
        plan.storage[value] = name
        owner[name] = value

    dying: dict[int, list[Value]] = {}
    for value, index in last.items():
        dying.setdefault(index, []).append(value)
    for i, ins in enumerate(instructions):
        place(i, ins)
        for value in dying.get(i, ()):
            name = plan.storage.get(value)
            if name is not None and name.startswith("b") and owner.get(name) is value:
                free.setdefault((value.shape, value.dtype), []).append(name)
                del owner[name]
    for name, value, _ in targets:
        if plan.storage.get(value) != name:
            plan.copies.append((name, value))
    return plan


def _assemble(instructions: list[Instruction], plan: Plan, kept: set[Value], backend: Any) -> None:
    """Let the parts of each concatenation (``concat``, ``stack``) be computed straight
    into their slice of its result, a buffer of its own: the copy disappears, and so do
    the parts' own buffers. A part that cannot be (a constant, a view, a result of a
    call without ``out=``, a part already placed elsewhere) is copied in as before.
    Outermost first, so that a concatenation of concatenations places every level."""
    xp = backend.xp
    made_by = {ins.out: ins for ins in instructions if ins.out is not None}
    for ins in reversed(instructions):
        if ins.fn not in (xp.concat, xp.stack) or ins.out is None or not ins.args:
            continue
        whole, parts = ins.out, ins.args[0]
        if type(parts) not in (list, tuple) or not all(isinstance(p, Value) for p in parts):
            continue
        if whole in kept or whole.views or not whole.contiguous or not whole.shape:
            continue
        if len({id(p) for p in parts}) != len(parts):
            continue
        axis = ins.kwargs.get("axis", ins.args[1] if len(ins.args) > 1 else 0) % len(whole.shape)
        storage = plan.storage.get(whole)
        if storage is None:
            storage = f"b{len(plan.buffers)}"
            plan.buffers.append((whole.shape, whole.dtype))
            plan.storage[whole] = storage
            plan.placed.add(whole)
        contiguous = all(n == 1 for n in whole.shape[:axis])
        copies, offset = [], 0
        for position, part in enumerate(parts):
            if ins.fn is xp.stack:
                index = ":, " * axis + str(position)
            else:
                index = ":, " * axis + f"{offset}:{offset + part.shape[axis]}"
                offset += part.shape[axis]
            where = f"{storage}[{index}]"
            producer = producer_of(part, made_by, xp)
            maker = made_by.get(producer)
            fits = (
                maker is not None
                and producer not in plan.placed
                and producer not in kept
                and producer.kind == "op"
                and not producer.views
                and producer.contiguous
                and producer.shape != ()
                and (maker.fn in (xp.concat, xp.stack) or backend.with_out(maker.fn) is not None)
                and (contiguous or backend.can_alias(maker.fn) or maker.fn in (xp.concat, xp.stack))
            )
            if fits:
                plan.storage[producer] = where
                plan.placed.add(producer)
            else:
                copies.append((where, part))
        plan.assembled[whole] = copies


def _can_overwrite(ins: Instruction, arg: Any, i: int, last: dict, backend: Any) -> bool:
    """Whether ``ins`` may write its result over argument ``arg``: an elementwise
    function, an argument of the result's shape and dtype, needed by nothing after."""
    value = ins.out
    return (
        isinstance(arg, Value)
        and last.get(arg) == i
        and arg.shape == value.shape
        and arg.dtype == value.dtype
        and backend.can_alias(ins.fn)
        and any(a is arg for a in values_in(ins.args))
    )


# --- the generated function -------------------------------------------------------------------
def _literal(x: Any, names: Names, ref: Callable[[str], str] = str) -> str:
    """Python source for an argument: values by name (``ref`` turns a value's name into
    the expression that reads it), literals as themselves, other objects bound."""
    if isinstance(x, Value):
        if x.kind == "const":
            return names.of(x.constant, "c")
        return ref(repr(x))
    if type(x) is tuple:
        return "(" + "".join(_literal(item, names, ref) + ", " for item in x) + ")"
    if type(x) is list:
        return "[" + ", ".join(_literal(item, names, ref) for item in x) + "]"
    if type(x) is dict:
        return "{" + ", ".join(f"{k!r}: {_literal(v, names, ref)}" for k, v in x.items()) + "}"
    if x is None or x is Ellipsis or type(x) in (bool, int, str):
        return repr(x)
    if type(x) is float and x == x and abs(x) != float("inf"):
        return repr(x)
    return names.of(x, "k")


def statement(
    ins: Instruction, names: Names, plan: Plan, backend: Any, ref: Callable[[str], str] = str
) -> str:
    """One instruction as a line of Python (a check: the test, without raising)."""
    if ins.out in plan.assembled:  # its parts are in place already, or copied in here
        copy = names.of(backend.copy_into, "f")
        storage = plan.storage[ins.out]
        lines = [
            f"{copy}({where}, {_literal(part, names, ref)})"
            for where, part in plan.assembled[ins.out]
        ]
        return "; ".join([*lines, f"{ref(repr(ins.out))} = {storage}  # {ins.name}, assembled"])
    args = [_literal(a, names, ref) for a in ins.args]
    if ins.out is None:
        return args[0]
    args += [f"{k}={_literal(v, names, ref)}" for k, v in ins.kwargs.items()]
    storage = plan.storage.get(ins.out)
    fn = ins.fn
    if storage is not None:
        fn = backend.with_out(fn)
        args.append(f"out={storage if storage.startswith('b') else ref(storage)}")
    return f"{ref(repr(ins.out))} = {names.of(fn, 'f')}({', '.join(args)})  # {ins.name}"


def generate(
    instructions: list[Instruction],
    parameters: list[Value],
    target_parameters: list[str],
    plan: Plan,
    returned: list[Value],
    outputs: list[Value],
    backend: Any,
) -> tuple[str, dict[str, Any]]:
    """The source of ``replay(*parameters)`` and the objects it binds."""
    names = Names()
    body = []
    dying = _dying_locals(instructions, outputs, plan)
    for i, ins in enumerate(instructions):
        line = statement(ins, names, plan, backend)
        if ins.out is None:  # a check
            error = names.of(ins.error, "e")
            args = ", ".join(_literal(a, names) for a in ins.args[1:])
            line = f"if not {line}: raise {error}({args})"
        body.append(line)
        if i in dying:  # freed as soon as nothing needs it, as the eager step frees it
            body.append(f"del {', '.join(dying[i])}")
    copy = names.of(backend.copy_into, "f")
    for target, value in plan.copies:
        body.append(f"{copy}({target}, {_literal(value, names)})")
    # A returned view could share a reused buffer: return a copy of it.
    copied = names.of(backend.copy, "f")
    outputs = [
        (f"{copied}({_literal(v, names)})" if v.views else _literal(v, names)) for v in returned
    ]
    body.append("return (" + "".join(f"{o}, " for o in outputs) + ")")
    bound = {**names.bound, **allocate(plan, backend)}
    signature = [repr(v) for v in parameters] + target_parameters
    signature += [f"{name}={name}" for name in bound]
    source = f"def replay({', '.join(signature)}):\n" + "".join(f"    {line}\n" for line in body)
    return source, bound


def _dying_locals(
    instructions: list[Instruction], outputs: list[Value], plan: Plan
) -> dict[int, list[str]]:
    """Instruction index -> the local names free after it: a result's name, once neither
    it nor any later result written into its array is needed."""
    last = _last_uses(instructions, outputs)
    end: dict[str, int] = {}
    for i, ins in enumerate(instructions):
        value = ins.out
        if value is None:
            continue
        name = plan.storage.get(value, repr(value))
        for local in {repr(value), name}:
            if local.startswith("v"):
                end[local] = max(end.get(local, i), last.get(value, i))
    dying: dict[int, list[str]] = {}
    for local, index in end.items():
        if index < len(instructions):
            dying.setdefault(index, []).append(local)
    return dying


def allocate(plan: Plan, backend: Any) -> dict[str, Any]:
    """The plan's buffers, by name."""
    return {f"b{i}": backend.empty(shape, dtype) for i, (shape, dtype) in enumerate(plan.buffers)}


def build(
    instructions: list[Instruction],
    parameters: list[Value],
    target_parameters: list[str],
    returned: list[Value],
    targets: list[tuple[str, Value, Value | None]],
    backend: Any,
    options: Options,
) -> Replay:
    """Optimise a traced program and generate its replay function.

    ``parameters``: the values the replay takes as arguments (inputs, the tensors'
    arrays, host numbers), in order, then ``target_parameters``: the arrays of tensors it
    only writes; ``returned``: the values it returns; ``targets``: the tensors' arrays
    it must write (see `plan_buffers`)."""
    outputs = list(returned) + [value for _, value, _ in targets]
    if options.merge_duplicates:
        instructions, outputs = merge_duplicates(instructions, outputs)
        returned = outputs[: len(returned)]
        targets = [(n, v, e) for (n, _, e), v in zip(targets, outputs[len(returned) :])]
    if options.fold_constants:
        instructions = fold_constants(instructions, backend)
    if options.stack_products:
        instructions = stack_products(instructions, backend)
    if options.dead_code:
        instructions = eliminate_dead_code(instructions, outputs)
    if options.fold_casts:
        instructions = fold_casts(instructions, outputs, backend)
    if options.typed_numbers:
        instructions = type_numbers(instructions, backend)
    if options.fuse and backend.fuse is not None:
        instructions = fuse_elementwise(instructions, outputs, backend)
    reuse = options.reuse_buffers and backend.supports_out
    plan = plan_buffers(instructions, outputs, set(returned), targets, backend, reuse)
    source, bound = generate(
        instructions, parameters, target_parameters, plan, returned, outputs, backend
    )
    namespace = dict(bound)
    exec(compile(source, "<compiled step>", "exec"), namespace)  # noqa: S102
    buffers = [array for name, array in bound.items() if name.startswith("b")]
    run = namespace["replay"]
    return Replay(
        run, source, instructions, buffers, bound, plan, parameters, target_parameters, returned
    )
