"""The optimisations of a traced program: passes ``pass(program, backend) -> program``
in the order of `PIPELINE`, each computing the same outputs (`stack_products` up to the
order of a sum's additions). Each can be switched off (`Options`): the tests hold the
result against the plain program, ``python -m benchmarks.compile_modes`` times it.
"""

from __future__ import annotations

import operator
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from .emit import Names, attempt, last_uses, make_function
from .ir import Instruction, Program, Value, producer_of, tree_map


@dataclass(frozen=True)
class Options:
    """Which optimisations a compiled step applies (all on by default): the passes, and
    what the emitter does (``reuse_buffers``: emit.py; ``cuda_graph``: graphs.py)."""

    fold_constants: bool = True
    stack_products: bool = True
    dead_code: bool = True
    fold_casts: bool = True
    typed_numbers: bool = True
    fuse: bool = True
    reuse_buffers: bool = True
    cuda_graph: bool = True


def optimise(program: Program, backend: Any, options: Options) -> Program:
    for optimisation in PIPELINE:
        if getattr(options, optimisation.__name__):
            program = optimisation(program, backend)
    return program


def _made_by(program: Program) -> dict[Value, Instruction]:
    return {ins.out: ins for ins in program.instructions if ins.out is not None}


def _uses(program: Program) -> Counter:
    """How many times each value is an argument."""
    return Counter(v for ins in program.instructions for v in ins.values())


def _new(shape: tuple[int, ...], like: Value, views: tuple = ()) -> Value:
    return Value("op", shape, like.dtype, not views, views)


def fold_constants(program: Program, backend: Any) -> Program:
    """Compute once, now, every instruction whose arrays are all constants, and every
    ``*_like`` creation (it needs only a shape); their results become constants."""
    like = {getattr(backend.xp, n, None) for n in ("zeros_like", "ones_like", "full_like")}
    kept = []
    for ins in program.instructions:
        values = ins.values()
        if ins.out is None or not (ins.fn in like or all(v.kind == "const" for v in values)):
            kept.append(ins)
            continue

        def known(x: Any) -> Any:
            if type(x) is not Value:
                return x
            return x.constant if x.kind == "const" else backend.empty(x.shape, x.dtype)

        result = ins.fn(*tree_map(known, ins.args), **tree_map(known, ins.kwargs))
        ins.out.kind, ins.out.constant = "const", result
    return replace(program, instructions=kept)


def dead_code(program: Program, backend: Any) -> Program:
    """Keep the checks and what the outputs need; drop the rest."""
    live = set(program.outputs)
    kept = []
    for ins in reversed(program.instructions):
        if ins.out is None or ins.out in live:
            kept.append(ins)
            live.update(ins.values())
    return replace(program, instructions=kept[::-1])


def stack_products(program: Program, backend: Any, minimum: int = 3) -> Program:
    """Turn each sum of at least ``minimum`` products ``A_k^T B_k`` (2-d, one shape) into
    one product of the stacked operands, where the sum is finished; B_k already stacked
    (the backward of a recurrence's ``unbind``) are read from that stack. What it
    replaces is left to `dead_code`."""
    xp, instructions = backend.xp, program.instructions
    made_by, uses = _made_by(program), _uses(program)
    position = {ins.out: i for i, ins in enumerate(instructions) if ins.out is not None}
    first_use: dict[Value, int] = {}
    for i, ins in enumerate(instructions):
        for value in ins.values():
            first_use.setdefault(value, i)

    def is_add(ins: Instruction | None) -> bool:
        add = ins is not None and (ins.fn is operator.add or ins.fn is getattr(xp, "add", None))
        return add and len(ins.args) == 2 and not ins.kwargs

    def terms(value: Value) -> tuple[list[Value], list[Value]]:
        """The terms of a sum, and its partial sums (each used only by the sum)."""
        leaves, partial, pending = [], [], [value]
        while pending:
            v = pending.pop()
            ins = made_by.get(v)
            if is_add(ins) and (v is value or uses[v] == 1):
                partial.append(v)
                pending.extend(reversed(ins.args))
            else:
                leaves.append(v)
        return leaves, partial

    def operands(value: Value) -> tuple[Value, Value] | None:
        """(A, B) for a ``matmul(matrix_transpose(A), B)`` of 2-d values."""
        ins = made_by.get(value)
        if ins is None or ins.fn is not xp.matmul or ins.kwargs or len(ins.args) != 2:
            return None
        left = made_by.get(ins.args[0])
        if left is None or left.fn is not xp.matrix_transpose or len(left.args) != 1:
            return None
        a, b = left.args[0], ins.args[1]
        if type(a) is not Value or type(b) is not Value:
            return None
        return (a, b) if len(a.shape or ()) == 2 and len(b.shape or ()) == 2 else None

    def stacked(products: list, before: int) -> tuple[Value, int] | None:
        """(a stack along axis 0 made before ``before`` that holds the B_k as a run of its
        parts, where the run starts); ``products`` is put in the order of the run."""
        array = {id(b): id(producer_of(b, made_by, xp)) for _, (_, b) in products}
        for stack in instructions:
            if stack.fn is not xp.stack or stack.kwargs.get("axis", 0) or not stack.args:
                continue
            parts = stack.args[0] if type(stack.args[0]) in (list, tuple) else []
            order = {id(p): i for i, p in enumerate(parts)}
            places = sorted(order[a] for a in set(array.values()) if a in order)
            run = len(places) == len(products) and places[-1] - places[0] == len(places) - 1
            if run and position[stack.out] < before:
                products.sort(key=lambda item: order[array[id(item[1][1])]])
                return stack.out, places[0]
        return None

    replaced: dict[Instruction, list[Instruction]] = {}
    after: dict[Value, list[Instruction]] = {}  # instructions placed after a stack
    done: set[Value] = set()
    for ins in reversed(instructions):  # outermost sums first
        if not is_add(ins) or ins.out in done:
            continue
        parts, partial = terms(ins.out)
        products = [(v, operands(v)) for v in parts if operands(v) is not None]
        shapes = {(a.shape, b.shape, a.dtype) for _, (a, b) in products}
        if len(products) < minimum or len(shapes) != 1:
            continue
        done.update(partial)
        found = stacked(products, first_use.get(ins.out, len(instructions)))
        new = _stacked_sum(ins, parts, products, xp, found)
        if found is not None and position[found[0]] > position[ins.out]:
            replaced[ins], after[found[0]] = [], new  # the sum waits for the stack
        else:
            replaced[ins] = new
    result = []
    for ins in instructions:
        result += replaced.get(ins, [ins]) + after.get(ins.out, [])
    return replace(program, instructions=result)


def _stacked_sum(
    ins: Instruction, parts: list, products: list, xp: Any, b_stacked: tuple | None
) -> list[Instruction]:
    """Instructions computing ``ins.out``, the sum of ``parts``: one stacked product for
    ``products`` (part, (A, B)), an add for each other part. ``b_stacked``: (a stack
    holding the B_k from part ``start`` on, start)."""
    a_list = [a for _, (a, _) in products]
    b_list = [b for _, (_, b) in products]
    (rows, a_cols), b_cols = a_list[0].shape, b_list[0].shape[1]
    count = len(products) * rows
    a_all = _new((count, a_cols), a_list[0])
    a_t = _new((a_cols, count), a_all, views=(a_all,))
    new = [Instruction(xp.concat, (a_list,), {"axis": 0}, a_all, "stack")]
    if b_stacked is None:
        b_all = _new((count, b_cols), b_list[0])
        new.append(Instruction(xp.concat, (b_list,), {"axis": 0}, b_all, "stack"))
    else:
        stack, start = b_stacked
        run = _new((len(b_list), *stack.shape[1:]), stack, views=(stack,))
        index = (slice(start, start + len(b_list)), Ellipsis)
        new.append(Instruction(operator.getitem, (stack, index), {}, run, "getitem"))
        b_all = _new((count, b_cols), b_list[0], views=(run,))
        new.append(Instruction(xp.reshape, (run, (count, b_cols)), {}, b_all, "reshape"))
    new.append(Instruction(xp.matrix_transpose, (a_all,), {}, a_t, "matrix_transpose"))
    rest = [v for v in parts if v not in {v for v, _ in products}]
    total = ins.out if not rest else _new(ins.out.shape, ins.out)
    new.append(Instruction(xp.matmul, (a_t, b_all), {}, total, "stacked matmul"))
    for i, term in enumerate(rest):
        out = ins.out if i == len(rest) - 1 else _new(ins.out.shape, ins.out)
        new.append(Instruction(ins.fn, (total, term), {}, out, "add"))
        total = out
    return new


def fold_casts(program: Program, backend: Any) -> Program:
    """Drop each ``astype(x, dtype)`` of a boolean ``x`` that nothing else reads, when the
    backend can compute ``x`` as ``dtype`` directly (`Lowering.cast_result`): the
    instruction making ``x`` makes the cast result instead, one call and one array
    fewer (a sigmoid's mask, a one-hot row)."""
    astype = getattr(backend.xp, "astype", None)
    made_by, uses, outputs = _made_by(program), _uses(program), set(program.outputs)
    replaced: dict[Instruction, Instruction | None] = {}  # None: dropped
    names: dict[Value, Value] = {}  # a cast's result -> the new instruction's
    for ins in program.instructions:
        if ins.fn is not astype or len(ins.args) != 2 or set(ins.kwargs) - {"copy"}:
            continue
        x, dtype = ins.args
        producer = made_by.get(x) if type(x) is Value else None
        if producer is None or producer.kwargs or uses[x] != 1 or {x, ins.out} & outputs:
            continue
        fn = backend.cast_result(producer.fn, x.dtype, dtype) if x.dtype is not None else None
        if fn is not None:  # a value of its own (astype's may be a view of x: copy=False)
            names[ins.out] = _new(ins.out.shape, ins.out)
            name = f"{producer.name} as {ins.out.dtype}"
            replaced[producer] = Instruction(fn, producer.args, {}, names[ins.out], name)
            replaced[ins] = None
    rename = lambda x: names.get(x, x) if type(x) is Value else x  # noqa: E731
    kept = [replaced.get(ins, ins) for ins in program.instructions]
    kept = [
        replace(i, args=tree_map(rename, i.args), kwargs=tree_map(rename, i.kwargs))
        for i in kept
        if i is not None
    ]
    return replace(program, instructions=kept)


def typed_numbers(program: Program, backend: Any) -> Program:
    """Pass each Python number of an elementwise instruction on arrays of one dtype as
    the constant the backend says the call computes with (`Lowering.typed_number`),
    one constant per number and dtype. (Calls on 0-d values are left alone.)"""
    constants: dict[tuple, Value] = {}

    def typed(ins: Instruction) -> Instruction:
        arrays = ins.values()
        dtypes = {v.dtype for v in arrays}
        if ins.kwargs or ins.out is None or not ins.out.shape or len(dtypes) != 1:
            return ins
        if None in dtypes or any(not v.shape for v in arrays):
            return ins
        if not any(type(a) in (int, float) for a in ins.args):
            return ins
        (dtype,) = dtypes
        args = []
        for a in ins.args:
            number = backend.typed_number(ins.fn, a, dtype) if type(a) in (int, float) else None
            if number is not None:
                key = (type(a), repr(a), dtype)  # repr: 0.0 and -0.0 are equal, not the same
                if key not in constants:
                    constants[key] = Value("const", (), dtype, True, (), number)
                a = constants[key]
            args.append(a)
        return Instruction(ins.fn, tuple(args), {}, ins.out, ins.name, ins.error)

    return replace(program, instructions=[typed(ins) for ins in program.instructions])


def fuse(program: Program, backend: Any, minimum: int = 2) -> Program:
    """Turn each run of at least ``minimum`` consecutive elementwise instructions of one
    shape into one call of a function the backend fuses (one GPU kernel instead of
    one per operation). Only the run's results needed after it leave the kernel."""
    if backend.fuse is None:
        return program
    last = last_uses(program)

    def fusable(ins: Instruction | None, run: list[Instruction]) -> bool:
        return (
            ins is not None
            and ins.out is not None
            and ins.out.shape is not None
            and not ins.kwargs
            and backend.fusable(ins.fn)
            and all(type(a) is Value or type(a) in (int, float, bool) for a in ins.args)
            and (not run or run[0].out.shape == ins.out.shape)
        )

    result, run = [], []
    for i, ins in enumerate([*program.instructions, None]):
        if fusable(ins, run):
            run.append(ins)
            continue
        if len(run) >= minimum:
            result += _fused(run, [x.out for x in run if last.get(x.out, -1) >= i], backend)
        else:
            result += run
        run = []
        if ins is not None:
            result.append(ins)
    return replace(program, instructions=result)


def _fused(group: list[Instruction], leaving: list[Value], backend: Any) -> list[Instruction]:
    """One kernel computing ``group``, returning ``leaving``, and the getitems that
    take its results apart."""
    made = {ins.out for ins in group}
    inputs = list(dict.fromkeys(v for ins in group for v in ins.values() if v not in made))
    local = {v: f"a{k}" for k, v in enumerate(inputs)}
    local.update({ins.out: f"t{k}" for k, ins in enumerate(group)})
    names = Names()
    body = []
    for ins in group:
        args = ", ".join(local[a] if type(a) is Value else repr(a) for a in ins.args)
        body.append(f"{local[ins.out]} = {names.of(ins.fn, 'f')}({args})")
    body.append("return (" + "".join(f"{local[v]}, " for v in leaving) + ")")
    kernel = _kernel(body, [local[v] for v in inputs], names.bound, backend)
    together = Value("op")
    fused = [Instruction(kernel, tuple(inputs), {}, together, f"fused {len(group)} ops")]
    for k, value in enumerate(leaving):
        fused.append(Instruction(operator.getitem, (together, k), {}, value, "fused output"))
    return fused


_KERNELS: dict[tuple, _Fused] = {}  # one per distinct chain: each step of a recurrence
# repeats the same few chains, and a GPU library compiles each kernel it is given once


def _kernel(body: list[str], parameters: list[str], bound: dict, backend: Any) -> _Fused:
    key = (id(backend), tuple(body), tuple(parameters), tuple(map(id, bound.values())))
    if key not in _KERNELS:
        plain, _ = make_function(f"fused_{len(_KERNELS)}", parameters, body, bound)
        _KERNELS[key] = _Fused(plain, backend)
    return _KERNELS[key]


class _Fused:
    """A fused kernel, checked at its first call against its operations one by one (the
    same result shapes and dtypes); failing that, the operations from then on."""

    def __init__(self, plain: Any, backend: Any) -> None:
        self.plain, self.failure = plain, None
        self.fused = attempt(self, backend.fuse, plain) or plain
        self.checked = self.fused is plain

    def __call__(self, *args: Any) -> tuple:
        if not self.checked:
            self.checked = True
            results = attempt(self, self._check, *args)
            if results is not None:
                return results
            self.fused = self.plain
        return self.fused(*args)

    def _check(self, *args: Any) -> tuple:
        results = self.fused(*args)
        expected = [(r.shape, r.dtype) for r in self.plain(*args)]
        if [(r.shape, r.dtype) for r in results] != expected:
            raise TypeError(f"results {[(r.shape, r.dtype) for r in results]}, not {expected}")
        return results


PIPELINE = [fold_constants, stack_products, dead_code, fold_casts, typed_numbers, fuse]
