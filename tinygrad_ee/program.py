"""A traced program's optimisations: passes over its instruction list.

Each takes the instructions of a trace (tracing.py), or of the pass before, and returns
new ones computing the same outputs; `replay.build` runs them in order and generates the
function that replays the result. Each can be switched off (`Options`), so that the tests
can hold the optimised program against the plain one, and `python -m
benchmarks.compile_modes` can measure what each is worth:

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
- ``fold_casts``: a comparison whose result only a cast reads (the ``astype(z >= 0,
  float32)`` of every sigmoid) writes the cast result directly;
- ``typed_numbers``: the Python numbers of elementwise calls (``1 + e``, ``x * -1``)
  become constants of their arrays' dtype, made once (NumPy);
- ``fuse``: runs of elementwise instructions become one kernel each (CUDA);
- ``reuse_buffers`` and ``cuda_graph`` act on the generated function (replay.py,
  captured.py).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .tracing import Instruction, Value, values_in


@dataclass(frozen=True)
class Options:
    """Which program-level optimisations a compiled step applies (all on by default).

    ``fuse`` and ``cuda_graph`` only act on CUDA: elementwise chains as single kernels,
    and the whole replay launched as one CUDA graph; ``fold_casts`` and
    ``typed_numbers`` where the backend allows them (NumPy)."""

    merge_duplicates: bool = True
    fold_constants: bool = True
    dead_code: bool = True
    stack_products: bool = True
    fold_casts: bool = True
    typed_numbers: bool = True
    reuse_buffers: bool = True
    fuse: bool = True
    cuda_graph: bool = True


def _resolved(x: Any, known: Callable[[Value], Any]) -> Any:
    """``x`` (an instruction's nested arguments) with each Value ``v`` as ``known(v)``."""
    if isinstance(x, Value):
        return known(x)
    if type(x) in (tuple, list):
        return type(x)(_resolved(item, known) for item in x)
    if type(x) is dict:
        return {key: _resolved(item, known) for key, item in x.items()}
    return x


def _renamed(x: Any, names: dict[Value, Value]) -> Any:
    return _resolved(x, lambda v: names.get(v, v))


def _use_counts(instructions: list[Instruction]) -> dict[Value, int]:
    """How many times each value is an argument."""
    uses: dict[Value, int] = {}
    for ins in instructions:
        for value in values_in((ins.args, ins.kwargs)):
            uses[value] = uses.get(value, 0) + 1
    return uses


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
    if type(x) is float:  # by repr: 0.0 == -0.0, but x * 0.0 and x * -0.0 differ
        return ("float", repr(x))
    if x is None or x is Ellipsis or type(x) in (int, bool, str):
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
    uses = _use_counts(instructions)

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
        wanted = {id(producer_of(b, made_by, xp)) for b in b_list}
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
        stackable.sort(key=lambda item: order.index(id(producer_of(item[1][1], made_by, xp))))
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


def fold_casts(
    instructions: list[Instruction], outputs: list[Value], backend: Any
) -> list[Instruction]:
    """Drop each ``astype(x, dtype)`` of a boolean ``x`` that nothing else reads, when
    the backend can compute ``x`` as ``dtype`` directly (`Backend.cast_result`): the
    instruction making ``x`` makes the cast result instead, one call and one array
    fewer (a sigmoid's mask, a one-hot row)."""
    astype = getattr(backend.xp, "astype", None)
    if astype is None:
        return instructions
    made_by = {ins.out: ins for ins in instructions if ins.out is not None}
    uses = _use_counts(instructions)
    replaced: dict[Instruction, Instruction | None] = {}  # None: dropped
    names: dict[Value, Value] = {}  # a cast's result -> the new instruction's
    for ins in instructions:
        if ins.fn is not astype or len(ins.args) != 2 or ins.out in outputs:
            continue
        x, dtype = ins.args
        producer = made_by.get(x)
        if producer is None or uses[x] != 1 or x in outputs or set(ins.kwargs) - {"copy"}:
            continue
        if producer.kwargs or x.dtype is None:
            continue
        fn = backend.cast_result(producer.fn, x.dtype, dtype)
        if fn is not None:
            # a value of its own (astype's may be a view of x: `copy=False`)
            names[ins.out] = _new_value(ins.out, ins.out.shape)
            name = f"{producer.name} as {ins.out.dtype}"
            replaced[producer] = Instruction(fn, producer.args, {}, names[ins.out], name)
            replaced[ins] = None
    if not replaced:
        return instructions
    result = []
    for ins in instructions:
        ins = replaced.get(ins, ins)
        if ins is not None:
            args, kwargs = _renamed(ins.args, names), _renamed(ins.kwargs, names)
            result.append(Instruction(ins.fn, args, kwargs, ins.out, ins.name, ins.error))
    return result


def type_numbers(instructions: list[Instruction], backend: Any) -> list[Instruction]:
    """Pass each Python number of an elementwise instruction on arrays of one dtype as
    the constant the backend says the call computes with (`Backend.typed_number`),
    one constant per number and dtype. (Calls on 0-d values are left alone.)"""
    constants: dict[tuple, Value] = {}
    result = []
    for ins in instructions:
        arrays = list(values_in(ins.args))
        dtypes = {v.dtype for v in arrays}
        numbers = any(type(a) in (int, float) for a in ins.args)
        if ins.kwargs or not numbers or ins.out is None or not ins.out.shape or len(dtypes) != 1:
            result.append(ins)
            continue
        (dtype,) = dtypes
        if dtype is None or any(not v.shape for v in arrays):
            result.append(ins)
            continue
        args = []
        for a in ins.args:
            typed = backend.typed_number(ins.fn, a, dtype) if type(a) in (int, float) else None
            if typed is not None:
                key = (type(a), repr(a), dtype)  # repr: 0.0 and -0.0 are equal, not the same
                if key not in constants:
                    constants[key] = _constant(typed, dtype)
                a = constants[key]
            args.append(a)
        result.append(Instruction(ins.fn, tuple(args), {}, ins.out, ins.name, ins.error))
    return result


def _constant(array: Any, dtype: Any) -> Value:
    return Value(next(_counter), "const", tuple(array.shape), dtype, True, (), array)


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


def producer_of(part: Value, made_by: dict, xp: Any) -> Value:
    """The value whose array ``part`` is: itself, or what it reshapes without changing
    its shape (a linear layer's (-1, n) view of an (N, n) input)."""
    ins = made_by.get(part)
    while ins is not None and ins.fn is xp.reshape and ins.args and isinstance(ins.args[0], Value):
        if ins.args[0].shape != part.shape:
            break
        part = ins.args[0]
        ins = made_by.get(part)
    return part
