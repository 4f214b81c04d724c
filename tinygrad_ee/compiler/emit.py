"""Code generation: where each result of a program is written, and the Python that runs it.

    v12 = f3(v4, v7, out=b2)      # matmul, into a reused buffer
    v13 = f5(v12, v8, out=v12)    # add, in place: v12 is not needed after this

`plan` chooses where results go (see there); `emit` writes one `Line` per instruction
and the replay function of them, which frees each result (``del``) as soon as nothing
needs it; graphs.py cuts the same lines into device-graph segments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .ir import Instruction, Program, Value, leaves, producer_of, tree_map


@dataclass
class Line:
    """One instruction as Python, or the copies into tensors at the end (no
    instruction); ``reads`` and ``defines``: the local names it uses and makes."""

    text: str
    instruction: Instruction | None
    reads: list[str]
    defines: str | None


@dataclass
class Replay:
    """A program ready to run: ``run(*parameters)`` returns the returned arrays.
    ``bound``: the objects ``source`` names (functions, constants, ``buffers``)."""

    run: Callable[..., tuple]
    source: str
    program: Program
    buffers: list[Any]
    bound: dict[str, Any]
    lines: list[Line]
    local: dict[Value, str]  # each parameter's and result's name in the code
    instructions: list[Instruction]


@dataclass
class Plan:
    """Where each result is written: a buffer (``b3``), a tensor's array or a dead
    argument's (a local name), a slice of a buffer; absent: the call allocates."""

    storage: dict[Value, str] = field(default_factory=dict)
    buffers: list[tuple[tuple[int, ...], Any]] = field(default_factory=list)
    copies: list[tuple[str, Value]] = field(default_factory=list)  # (tensor, value) at the end
    # a concatenation -> its parts copied in (the others were written into their slice)
    assembled: dict[Value, list[tuple[str, Value]]] = field(default_factory=dict)
    placed: set[Value] = field(default_factory=set)  # storage fixed by `_assemble`

    def buffer(self, value: Value) -> str:
        self.buffers.append((value.shape, value.dtype))
        return f"b{len(self.buffers) - 1}"


def last_uses(program: Program) -> dict[Value, int]:
    """Index of the last instruction that needs each value (len(instructions) for the
    outputs). A value that may be a view keeps the values it views alive as long."""
    last: dict[Value, int] = {}
    for i, ins in enumerate(program.instructions):
        for value in ins.values():
            last[value] = i
    for value in program.outputs:
        last[value] = len(program.instructions)
    for ins in reversed(program.instructions):
        if ins.out is not None and ins.out in last:
            for viewed in ins.out.views:
                last[viewed] = max(last.get(viewed, -1), last[ins.out])
    return last


def plan(
    program: Program, local: dict[Value, str], backend: Any, reuse: bool, fixed: set[Value]
) -> Plan:
    """Choose where each result goes. With ``reuse`` (and ``out=``): into buffers reused
    once the values they held are dead, into an argument that dies at that instruction,
    straight into the array of the tensor it is written to (if its old contents are
    dead by then, else by a copy at the end), the parts of a concatenation into their
    slice of it. ``fixed``: results that get a buffer of their own (graphs)."""
    result = Plan()
    last = last_uses(program)
    target = {value: state for state, value in program.writes}
    if reuse:
        _assemble(program, result, set(program.returned) | set(target) | fixed, backend)
    free: dict[tuple, list[str]] = {}
    owner: dict[str, Value] = {}  # buffer or local name -> the value whose storage it is

    def place(i: int, ins: Instruction) -> None:
        value = ins.out
        if value is None or value in result.placed or backend.with_out(ins.fn) is None:
            return
        if value in fixed:
            result.storage[value] = result.buffer(value)
            return
        if not reuse or value in program.returned or value.views or not value.contiguous:
            return
        if value.shape == ():  # NumPy computes on 0-d results as scalars (own rounding): keep
            return
        state = target.get(value)
        if state is not None and (last.get(state, -1) < i or overwrites(ins, state, i)):
            result.storage[value] = local[state]
            return
        for arg in leaves(ins.args):
            if type(arg) is not Value or arg in result.placed or arg in fixed:
                continue
            if arg.kind == "op" and not arg.views and overwrites(ins, arg, i):
                name = result.storage.get(arg, local[arg])
                if owner.get(name, arg) is arg or name == local[arg]:
                    result.storage[value] = name
                    owner[name] = value
                    return
        pool = free.get((value.shape, value.dtype))
        name = pool.pop() if pool else result.buffer(value)
        result.storage[value] = name
        owner[name] = value

    def overwrites(ins: Instruction, arg: Value, i: int) -> bool:
        """Whether ``ins`` may write its result over argument ``arg``: an elementwise
        function, an argument of the result's shape and dtype, needed by nothing after."""
        return (
            last.get(arg) == i
            and arg.shape == ins.out.shape
            and arg.dtype == ins.out.dtype
            and backend.can_alias(ins.fn)
            and any(a is arg for a in leaves(ins.args))
        )

    dying: dict[int, list[Value]] = {}
    for value, index in last.items():
        dying.setdefault(index, []).append(value)
    for i, ins in enumerate(program.instructions):
        place(i, ins)
        for value in dying.get(i, ()):
            name = result.storage.get(value)
            if name is not None and name[0] == "b" and owner.get(name) is value:  # a buffer
                free.setdefault((value.shape, value.dtype), []).append(name)
                del owner[name]
    for state, value in program.writes:
        if result.storage.get(value) != local[state]:
            result.copies.append((local[state], value))
    return result


def _assemble(program: Program, plan: Plan, kept: set[Value], backend: Any) -> None:
    """Let the parts of each concatenation (``concat``, ``stack``) be computed straight
    into their slice of its buffer (no copy, no buffers of their own), those that can
    (not a constant, a view, a call without ``out=``); outermost first, for nesting."""
    xp = backend.xp
    joins = (xp.concat, xp.stack)
    made_by = {ins.out: ins for ins in program.instructions if ins.out is not None}
    for ins in reversed(program.instructions):
        if ins.fn not in joins or ins.out is None or backend.with_out(ins.fn) is None:
            continue
        whole, parts = ins.out, ins.args[0]
        if type(parts) not in (list, tuple) or not all(type(p) is Value for p in parts):
            continue
        if whole in kept or whole.views or not whole.contiguous or not whole.shape:
            continue
        if len({id(p) for p in parts}) != len(parts):
            continue
        axis = ins.kwargs.get("axis", ins.args[1] if len(ins.args) > 1 else 0) % len(whole.shape)
        if whole not in plan.storage:
            plan.storage[whole] = plan.buffer(whole)
            plan.placed.add(whole)
        contiguous = all(n == 1 for n in whole.shape[:axis])
        copies, offset = [], 0
        for position, part in enumerate(parts):
            if ins.fn is xp.stack:  # the Ellipsis keeps a view: b[0] of 1-d b is a scalar
                index = ":, " * axis + f"{position}, ..."
            else:
                index = ":, " * axis + f"{offset}:{offset + part.shape[axis]}"
                offset += part.shape[axis]
            where = f"{plan.storage[whole]}[{index}]"
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
                and (maker.fn in joins or backend.with_out(maker.fn) is not None)
                and (contiguous or backend.can_alias(maker.fn) or maker.fn in joins)
            )
            if fits:
                plan.storage[producer] = where
                plan.placed.add(producer)
            else:
                copies.append((where, part))
        plan.assembled[whole] = copies


# --- the code -----------------------------------------------------------------------------
def emit(program: Program, backend: Any, reuse: bool, fixed: set[Value]) -> Replay:
    """The replay function of ``program`` (see `plan` for ``reuse`` and ``fixed``)."""
    made = [ins.out for ins in program.instructions if ins.out is not None]
    local = {value: f"v{i}" for i, value in enumerate([*program.parameters, *made])}
    where = plan(program, local, backend, reuse, fixed)
    local_names = set(local.values())
    buffers = [backend.empty(shape, dtype) for shape, dtype in where.buffers]
    names = Names({f"b{i}": buffer for i, buffer in enumerate(buffers)})

    def source(x: Any) -> str:  # values by name, literals as themselves, objects bound
        def leaf(y: Any) -> _Code:
            if type(y) is Value:
                return _Code(names.of(y.constant, "c") if y.kind == "const" else local[y])
            if y is None or y is Ellipsis or type(y) in (bool, int, str):
                return _Code(repr(y))
            if type(y) is float and y == y and abs(y) != float("inf"):
                return _Code(repr(y))
            return _Code(names.of(y, "k"))

        return repr(tree_map(leaf, x))

    def line(ins: Instruction) -> Line:
        out, reads = ins.out, [local[v] for v in ins.values() if v in local]
        if out is None:  # a check
            args = [source(a) for a in ins.args]
            error = names.of(ins.error, "e")
            return Line(f"if not {args[0]}: raise {error}({', '.join(args[1:])})", ins, reads, None)
        storage = where.storage.get(out)
        if out in where.assembled:  # its parts are in place already, or copied in here
            copy = names.of(backend.copy_into, "f")
            parts = where.assembled[out]
            text = [f"{copy}({into}, {source(part)})" for into, part in parts]
            text.append(f"{local[out]} = {storage}  # {ins.name}, assembled")
            reads = [local[part] for _, part in parts if part in local]
            return Line("; ".join(text), ins, reads, local[out])
        args = [source(a) for a in ins.args] + [f"{k}={source(v)}" for k, v in ins.kwargs.items()]
        fn = ins.fn
        if storage is not None:
            fn = backend.with_out(fn)
            args.append(f"out={storage}")
            reads += [storage] if storage in local_names else []
        text = f"{local[out]} = {names.of(fn, 'f')}({', '.join(args)})  # {ins.name}"
        return Line(text, ins, reads, local[out])

    lines = [line(ins) for ins in program.instructions]
    copy = names.of(backend.copy_into, "f")
    for target, value in where.copies:
        text = f"{copy}({target}, {source(value)})"
        lines.append(Line(text, None, [target] + ([local[value]] if value in local else []), None))
    # The function frees each local once nothing needs it (as eager code does), and
    # returns copies of what may share a buffer with the next call.
    body = []
    dying = _dying_locals(program, local, where)
    for i, each in enumerate(lines):
        body.append(each.text)
        if i in dying:
            body.append(f"del {', '.join(dying[i])}")
    copied = names.of(backend.copy, "f")
    returned = [
        f"{copied}({source(v)})" if v.views or v in fixed else source(v) for v in program.returned
    ]
    body.append("return (" + "".join(f"{r}, " for r in returned) + ")")
    parameters = [local[v] for v in program.parameters]
    run, text = make_function("replay", parameters, body, names.bound)
    return Replay(run, text, program, buffers, names.bound, lines, local, program.instructions)


def _dying_locals(program: Program, local: dict[Value, str], where: Plan) -> dict[int, list[str]]:
    """Instruction index -> the local names free after it: a result's name, once neither
    it nor any later result written into its array is needed."""
    last = last_uses(program)
    names = set(local.values())
    end: dict[str, int] = {}
    for i, ins in enumerate(program.instructions):
        if ins.out is not None:
            for name in {local[ins.out], where.storage.get(ins.out, local[ins.out])}:
                if name in names:
                    end[name] = max(end.get(name, i), last.get(ins.out, i))
    dying: dict[int, list[str]] = {}
    for name, index in end.items():
        if index < len(program.instructions):
            dying.setdefault(index, []).append(name)
    return dying


class _Code(str):
    """Source text that ``repr`` gives back as it is (inside tuples, lists and dicts)."""

    __repr__ = str.__str__


class Names:
    """Names for the objects generated code uses, bound as default arguments."""

    def __init__(self, bound: dict[str, Any] | None = None) -> None:
        self.bound: dict[str, Any] = dict(bound or {})
        self._by_id = {id(obj): name for name, obj in self.bound.items()}

    def of(self, obj: Any, prefix: str) -> str:
        name = self._by_id.get(id(obj))
        if name is None:
            name = self._by_id[id(obj)] = f"{prefix}{len(self.bound)}"
            self.bound[name] = obj
        return name


def make_function(
    name: str, parameters: list[str], lines: list[str], bound: dict[str, Any]
) -> tuple[Callable, str]:
    """The function ``name(*parameters)`` made of ``lines``, and its source. The objects
    ``bound`` are its default arguments (the lines read them as fast locals)."""
    signature = ", ".join([*parameters, *(f"{key}={key}" for key in bound)])
    source = f"def {name}({signature}):\n" + "".join(f"    {line}\n" for line in lines)
    namespace = dict(bound)
    exec(compile(source, f"<{name}>", "exec"), namespace)  # noqa: S102
    return namespace[name], source


def attempt(owner: Any, action: Callable, *args: Any) -> Any:
    """``action(*args)``, or None if it raises: then ``owner.failure`` says why, and the
    owner runs its plain path from then on (a device library's errors are of its own
    types: a fused kernel it cannot build, a graph it cannot capture)."""
    try:
        return action(*args)
    except Exception as error:
        owner.failure = f"{type(error).__name__}: {error}"
        return None
