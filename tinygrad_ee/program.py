"""A traced program: its optimisations, and the Python function that replays it.

`build` takes the instructions of a trace (tracing.py) and the values the program
must produce, and returns a `Replay`: a Python function generated from the program,
one line per array call, with no tensors, closures or graph walk left::

    v12 = f3(v4, v7, out=b2)      # linear's product, into a reused buffer
    v13 = f5(v12, v8, out=v12)    # + bias, in place: v12 is not needed after this

Each optimisation can be switched off (`Options`), so that the tests can hold the
optimised program against the plain one:

- ``merge_duplicates``: an instruction equal to an earlier one (same function, same
  arguments) reuses its result, e.g. the transposed weight of every backward step;
- ``fold_constants``: what depends on constants alone (the loss's gradient seed, and
  what follows from it) is computed once, when the program is built;
- ``dead_code``: instructions whose results nothing needs are dropped, e.g. the
  gradient of the input data;
- ``stack_products``: a sum of products ``A_1^T B_1 + ... + A_T^T B_T`` (a recurrent
  weight's gradient, one term per time step) becomes one product of the stacked
  operands, ``[A_1; ...; A_T]^T [B_1; ...; B_T]``: the same value up to the order of
  the additions;
- ``reuse_buffers``: results are written with ``out=`` into buffers allocated once
  and reused as soon as the values they held are dead (or into an argument that dies
  at that instruction); new parameter values go straight into the parameters' own
  arrays. Backends without ``out=`` (array-api-strict) replay functionally.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .tracing import Instruction, Value, values_in


@dataclass(frozen=True)
class Options:
    """Which program-level optimisations a compiled step applies (all on by default).

    ``fuse`` and ``cuda_graph`` only act on CUDA: elementwise chains as single kernels,
    and the whole replay launched as one CUDA graph."""

    merge_duplicates: bool = True
    fold_constants: bool = True
    dead_code: bool = True
    stack_products: bool = True
    reuse_buffers: bool = True
    fuse: bool = True
    cuda_graph: bool = True


@dataclass
class Replay:
    """A program ready to run: ``run(*arguments)`` returns the output arrays.
    ``bound``: the objects ``source`` names (functions, constants, ``buffers``)."""

    run: Callable[..., tuple]
    source: str
    instructions: list[Instruction]
    buffers: list[Any]
    bound: dict[str, Any]


def _renamed(x: Any, names: dict[Value, Value]) -> Any:
    if isinstance(x, Value):
        return names.get(x, x)
    if type(x) in (tuple, list):
        return type(x)(_renamed(item, names) for item in x)
    if type(x) is dict:
        return {key: _renamed(item, names) for key, item in x.items()}
    return x


# --- optimisations ------------------------------------------------------------------------
def merge_duplicates(
    instructions: list[Instruction], outputs: list[Value]
) -> tuple[list[Instruction], list[Value]]:
    """Drop each instruction equal to an earlier one; its uses take the earlier result.
    (Every instruction is a pure function of its arguments: in-place updates were
    recorded as new values.)"""
    seen: dict[Any, Value] = {}
    names: dict[Value, Value] = {}
    kept = []
    for instruction in instructions:
        args, kwargs = _renamed(instruction.args, names), _renamed(instruction.kwargs, names)
        instruction = Instruction(
            instruction.fn, args, kwargs, instruction.out, instruction.name, instruction.error
        )
        if instruction.out is not None:
            key = (id(instruction.fn), _key(args), _key(kwargs))
            earlier = seen.get(key)
            if earlier is not None:
                names[instruction.out] = earlier
                continue
            seen[key] = instruction.out
        kept.append(instruction)
    return kept, [names.get(v, v) for v in outputs]


def _key(x: Any) -> Any:
    """A hashable stand-in for an argument: equal only for arguments that are equal
    with their types (1, 1.0 and True differ)."""
    if isinstance(x, Value):
        return x
    if type(x) in (tuple, list):
        return (type(x).__name__, *(_key(item) for item in x))
    if type(x) is dict:
        return ("dict", *sorted((k, _key(v)) for k, v in x.items()))
    if type(x) is slice:
        return ("slice", _key(x.start), _key(x.stop), _key(x.step))
    if x is None or x is Ellipsis or type(x) in (int, float, bool, str):
        return (type(x).__name__, x)
    try:
        hash(x)
    except TypeError:
        return ("object", id(x))
    return (type(x).__name__, x)


def fold_constants(instructions: list[Instruction], backend: Any) -> list[Instruction]:
    """Compute once, now, every instruction whose arrays are all constants, and every
    ``*_like`` creation (it needs only a shape): the gradient seed of a loss and what
    follows from it alone. Their results become constants of the program."""
    shape_only = {getattr(backend.xp, n, None) for n in ("zeros_like", "ones_like", "full_like")}
    shape_only.discard(None)
    kept = []
    for ins in instructions:
        arrays = list(values_in((ins.args, ins.kwargs)))
        foldable = ins.out is not None and (
            ins.fn in shape_only or all(v.kind == "const" for v in arrays)
        )
        if not foldable:
            kept.append(ins)
            continue

        def known(v: Value) -> Any:
            return v.constant if v.kind == "const" else backend.empty(v.shape, v.dtype)

        args, kwargs = _resolved(ins.args, known), _resolved(ins.kwargs, known)
        ins.out.kind, ins.out.constant = "const", ins.fn(*args, **kwargs)
    return kept


def _resolved(x: Any, known: Callable[[Value], Any]) -> Any:
    if isinstance(x, Value):
        return known(x)
    if type(x) in (tuple, list):
        return type(x)(_resolved(item, known) for item in x)
    if type(x) is dict:
        return {key: _resolved(item, known) for key, item in x.items()}
    return x


def eliminate_dead_code(instructions: list[Instruction], outputs: list[Value]) -> list[Instruction]:
    """Keep the checks and what the outputs need; drop the rest."""
    live = set(outputs)
    kept = []
    for instruction in reversed(instructions):
        if instruction.out is None or instruction.out in live:
            kept.append(instruction)
            live.update(values_in((instruction.args, instruction.kwargs)))
    return kept[::-1]


def stack_products(
    instructions: list[Instruction], backend: Any, minimum: int = 3
) -> list[Instruction]:
    """Turn each sum of at least ``minimum`` products ``matmul(matrix_transpose(A_k),
    B_k)`` (2-d operands of one shape each) into one product of the stacked operands,
    computed where the sum is finished. The partial sums and single products it
    replaces are left to `eliminate_dead_code`."""
    xp = backend.xp
    made_by = {ins.out: ins for ins in instructions if ins.out is not None}
    uses: dict[Value, int] = {}
    for ins in instructions:
        for value in values_in((ins.args, ins.kwargs)):
            uses[value] = uses.get(value, 0) + 1

    def is_add(ins: Instruction | None) -> bool:
        return ins is not None and backend.is_add(ins.fn) and len(ins.args) == 2 and not ins.kwargs

    def terms(value: Value) -> tuple[list[Value], list[Value]]:
        """The terms of a sum, and its partial sums (each used only by the sum)."""
        leaves, partial, pending = [], [], [value]
        while pending:
            v = pending.pop()
            ins = made_by.get(v)
            if is_add(ins) and (v is value or uses.get(v, 0) == 1):
                partial.append(v)
                pending.extend(reversed(ins.args))
            else:
                leaves.append(v)
        return leaves, partial

    def product_operands(value: Value) -> tuple[Value, Value] | None:
        ins = made_by.get(value)
        if ins is None or ins.fn is not xp.matmul or ins.kwargs or len(ins.args) != 2:
            return None
        left = made_by.get(ins.args[0])
        if left is None or left.fn is not xp.matrix_transpose or len(left.args) != 1:
            return None
        a, b = left.args[0], ins.args[1]
        if not isinstance(a, Value) or not isinstance(b, Value):
            return None
        if a.shape is None or b.shape is None or len(a.shape) != 2 or len(b.shape) != 2:
            return None
        return a, b

    position = {ins.out: i for i, ins in enumerate(instructions) if ins.out is not None}
    first_use: dict[Value, int] = {}
    for i, ins in enumerate(instructions):
        for value in values_in((ins.args, ins.kwargs)):
            first_use.setdefault(value, i)
    stacks = [ins for ins in instructions if ins.fn is xp.stack and ins.kwargs.get("axis", 0) == 0]

    def stacked_already(b_list: list[Value], after: int) -> tuple[Instruction, int] | None:
        """A stack (along axis 0) holding these operands as a run of consecutive parts
        (and where that run starts), usable by a sum first needed at ``after``: the
        backward of a recurrence's ``unbind`` stacks each step's gradient, and a
        recurrent weight's gradient needs them too."""
        wanted = {id(_producer(b, made_by, xp)) for b in b_list}
        for stack in stacks:
            parts = stack.args[0] if stack.args else None
            if type(parts) not in (list, tuple) or position[stack.out] >= after:
                continue
            places = sorted(i for i, p in enumerate(parts) if id(p) in wanted)
            if len(places) == len(wanted) and places[-1] - places[0] == len(places) - 1:
                return stack, places[0]
        return None

    replaced: dict[Instruction, list[Instruction]] = {}
    after: dict[Instruction, list[Instruction]] = {}  # instructions placed after another
    done: set[Value] = set()
    superseded: set[Value] = set()  # partial sums and single products, unused once stacked
    for ins in reversed(instructions):  # outermost sums first
        if not is_add(ins) or ins.out in done:
            continue
        parts, partial = terms(ins.out)
        products = [(v, product_operands(v)) for v in parts]
        stackable = [(v, ops) for v, ops in products if ops is not None]
        shapes = {(ops[0].shape, ops[1].shape, ops[0].dtype) for _, ops in stackable}
        if len(stackable) < minimum or len(shapes) != 1:
            continue
        done.update(partial)
        superseded.update(partial)
        for v, _ in stackable:
            superseded.update([v, made_by[v].args[0]])
        found = stacked_already([ops[1] for _, ops in stackable], first_use.get(ins.out, 1 << 60))
        if found is None:
            replaced[ins] = _stacked_sum(ins, parts, stackable, xp)
            continue
        stack, start = found
        order = [id(p) for p in stack.args[0]]
        stackable.sort(key=lambda item: order.index(id(_producer(item[1][1], made_by, xp))))
        new = _stacked_sum(ins, parts, stackable, xp, (stack.out, start))
        if position[stack.out] > position[ins.out]:
            replaced[ins] = []
            after.setdefault(stack, []).extend(new)
        else:
            replaced[ins] = new
    if not replaced:
        return instructions
    result = []
    for ins in instructions:
        result.extend(replaced.get(ins, [ins]))
        result.extend(after.get(ins, []))
    kept, needed = [], set()
    for ins in reversed(result):
        if ins.out is None or ins.out not in superseded or ins.out in needed:
            kept.append(ins)
            needed.update(values_in((ins.args, ins.kwargs)))
    return kept[::-1]


_counter = itertools.count(1_000_000)  # indices of values the passes make


def _new_value(like: Value, shape: tuple[int, ...], views: tuple = ()) -> Value:
    return Value(next(_counter), "op", shape, like.dtype, not views, views)


def _stacked_sum(
    ins: Instruction, parts: list, stackable: list, xp: Any, b_stacked: tuple | None = None
) -> list[Instruction]:
    """Instructions computing ``ins.out`` (a sum of ``parts``) with one stacked product.
    ``b_stacked``: (a stack holding the right operands from part ``start`` on, start),
    which is then only sliced and reshaped."""
    a_list = [ops[0] for _, ops in stackable]
    b_list = [ops[1] for _, ops in stackable]
    (rows, a_cols), b_cols = a_list[0].shape, b_list[0].shape[1]
    count = len(stackable) * rows
    a_all = _new_value(a_list[0], (count, a_cols))
    a_t = _new_value(a_all, (a_cols, count), views=(a_all,))
    new = [Instruction(xp.concat, (a_list,), {"axis": 0}, a_all, "stack")]
    if b_stacked is None:
        b_all = _new_value(b_list[0], (count, b_cols))
        new.append(Instruction(xp.concat, (b_list,), {"axis": 0}, b_all, "stack"))
    else:
        stacked, start = b_stacked
        run = _new_value(stacked, (len(b_list), *stacked.shape[1:]), views=(stacked,))
        index = (slice(start, start + len(b_list)), Ellipsis)
        new.append(Instruction(operator.getitem, (stacked, index), {}, run, "getitem"))
        b_all = _new_value(b_list[0], (count, b_cols), views=(run,))
        new.append(Instruction(xp.reshape, (run, (count, b_cols)), {}, b_all, "reshape"))
    new.append(Instruction(xp.matrix_transpose, (a_all,), {}, a_t, "matrix_transpose"))
    rest = [v for v in parts if v not in {v for v, _ in stackable}]
    total = ins.out if not rest else _new_value(ins.out, ins.out.shape)
    new.append(Instruction(xp.matmul, (a_t, b_all), {}, total, "stacked matmul"))
    for i, term in enumerate(rest):
        last = i == len(rest) - 1
        out = ins.out if last else _new_value(ins.out, ins.out.shape)
        new.append(Instruction(ins.fn, (total, term), {}, out, "add"))
        total = out
    return new


def fuse_elementwise(
    instructions: list[Instruction], outputs: list[Value], backend: Any, minimum: int = 2
) -> list[Instruction]:
    """Turn each run of at least ``minimum`` consecutive elementwise instructions into one
    call of a function the backend fuses (one GPU kernel instead of one per operation).
    Only the run's results needed after it leave the kernel."""
    users: dict[Value, set[int]] = {}
    for i, ins in enumerate(instructions):
        for value in values_in((ins.args, ins.kwargs)):
            users.setdefault(value, set()).add(i)
    needed_at_end = set(outputs)

    def fusable(ins: Instruction) -> bool:
        return (
            ins.out is not None
            and ins.out.shape is not None
            and not ins.kwargs
            and backend.fusable(ins.fn)
            and all(isinstance(a, Value) or type(a) in (int, float, bool) for a in ins.args)
        )

    result, run = [], []
    for i, ins in enumerate([*instructions, None]):
        # One kernel has one shape: every result of a run has the same one.
        if (
            ins is not None
            and fusable(ins)
            and (not run or instructions[run[0]].out.shape == ins.out.shape)
        ):
            run.append(i)
            continue
        if len(run) >= minimum:
            result.extend(_fused(instructions, run, users, needed_at_end, backend))
        else:
            result.extend(instructions[j] for j in run)
        run = []
        if ins is not None:
            result.append(ins)
    return result


def _fused(instructions, run, users, needed_at_end, backend) -> list[Instruction]:
    group = [instructions[j] for j in run]
    made = {ins.out for ins in group}
    inputs = list(dict.fromkeys(v for ins in group for v in values_in(ins.args) if v not in made))
    leaving = [
        ins.out
        for ins in group
        if ins.out in needed_at_end or any(j not in run for j in users.get(ins.out, ()))
    ]
    names = Names()
    local = {v: f"a{k}" for k, v in enumerate(inputs)}
    local.update({ins.out: f"t{k}" for k, ins in enumerate(group)})
    body = []
    for ins in group:
        args = ", ".join(local[a] if isinstance(a, Value) else repr(a) for a in ins.args)
        body.append(f"{local[ins.out]} = {names.of(ins.fn, 'f')}({args})")
    body.append("return (" + "".join(f"{local[v]}, " for v in leaving) + ")")
    kernel = _fused_kernel(body, [local[v] for v in inputs], names, backend)
    together = Value(next(_counter), "op", None, None)
    fused = [Instruction(kernel, tuple(inputs), {}, together, f"fused {len(group)} ops")]
    for k, value in enumerate(leaving):
        fused.append(Instruction(operator.getitem, (together, k), {}, value, "fused output"))
    return fused


_KERNELS: dict[tuple, _Fused] = {}  # one per distinct chain: each step of a recurrence
# repeats the same few chains, and a GPU library compiles each kernel it is given once


def _fused_kernel(body: list[str], params: list[str], names: Names, backend: Any) -> _Fused:
    key = (id(backend), tuple(body), tuple(params), tuple(map(id, names.bound.values())))
    kernel = _KERNELS.get(key)
    if kernel is not None:
        return kernel
    name = f"fused_{len(_KERNELS)}"
    signature = params + [f"{n}={n}" for n in names.bound]
    source = f"def {name}({', '.join(signature)}):\n" + "".join(f"    {b}\n" for b in body)
    namespace = dict(names.bound)
    exec(compile(source, f"<{name}>", "exec"), namespace)  # noqa: S102
    plain = namespace[name]
    kernel = _KERNELS[key] = _Fused(plain, plain)
    try:
        kernel.fused = backend.fuse(plain)
    except Exception as error:  # the library's own errors, whatever their type
        kernel.checked, kernel.failure = True, f"{type(error).__name__}: {error}"
    return kernel


class _Fused:
    """A fused kernel that falls back, once and for good, to running its operations one
    by one if the library cannot build it or its results differ in shape or dtype from
    the operations' (checked at the first call; the reason is kept in ``failure``)."""

    def __init__(self, plain: Callable, fused: Callable) -> None:
        self.plain, self.fused = plain, fused
        self.checked = False
        self.failure: str | None = None

    def __call__(self, *args: Any) -> tuple:
        if self.checked:
            return self.fused(*args)
        self.checked = True
        try:
            results = self.fused(*args)
            expected = [(r.shape, r.dtype) for r in self.plain(*args)]
            if [(r.shape, r.dtype) for r in results] != expected:
                raise TypeError(f"results {[(r.shape, r.dtype) for r in results]}, not {expected}")
        except Exception as error:  # the library's own errors, whatever their type
            self.failure = f"{type(error).__name__}: {error}"
            self.fused = self.plain
            results = self.plain(*args)
        return results


# --- buffers ------------------------------------------------------------------------------
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
            producer = _producer(part, made_by, xp)
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


def _producer(part: Value, made_by: dict, xp: Any) -> Value:
    """The value whose array ``part`` is: itself, or what it reshapes without changing
    its shape (a linear layer's (-1, n) view of an (N, n) input)."""
    ins = made_by.get(part)
    while ins is not None and ins.fn is xp.reshape and ins.args and isinstance(ins.args[0], Value):
        if ins.args[0].shape != part.shape:
            break
        part = ins.args[0]
        ins = made_by.get(part)
    return part


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
class Names:
    """Names for the objects the generated code uses, bound as default arguments."""

    def __init__(self) -> None:
        self.bound: dict[str, Any] = {}
        self._by_id: dict[int, str] = {}

    def bind(self, bound: dict[str, Any]) -> None:
        """Take over names given already (another function of the same program)."""
        self.bound.update(bound)
        self._by_id.update({id(obj): name for name, obj in bound.items()})

    def of(self, obj: Any, prefix: str) -> str:
        name = self._by_id.get(id(obj))
        if name is None:
            name = self._by_id[id(obj)] = f"{prefix}{len(self.bound)}"
            self.bound[name] = obj
        return name


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
    if options.cuda_graph and backend.graphs() is not None:
        from .captured import GraphReplay  # it builds on this module

        try:
            run = GraphReplay(
                run, instructions, parameters, target_parameters, plan, returned, backend, bound
            )
        except Exception as error:  # a program graphs cannot run: plain calls (and why)
            run.failure = f"{type(error).__name__}: {error}"
    return Replay(run, source, instructions, buffers, bound)
