"""The program a trace records and the passes rewrite, and the one walk over nested
arguments. Straight-line code in static single assignment: every value is made once
(an in-place update is recorded as a new value, `setitem`), so every instruction is a
pure function of its arguments.

    v7 = matmul(v3, v5)        Instruction(fn=xp.matmul, args=(v3, v5), out=v7)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_numbers = itertools.count()  # every value's number, unique in the process (for reading)


@dataclass(eq=False)
class Value:
    """One value of a program: "input" (a tensor argument's array), "host" (a Python
    number read at each call, ``lr``), "state" (the array of a tensor made before the
    step, which the program may write in place), "const" (held in ``constant``) or "op"
    (an instruction's result). ``shape`` and ``dtype``: None for Python numbers and a
    fused kernel's tuple. ``views``: values whose memory it may share (must outlive it)."""

    kind: str
    shape: tuple[int, ...] | None = None
    dtype: Any = None
    contiguous: bool = False
    views: tuple[Value, ...] = ()
    constant: Any = None
    number: int = field(default_factory=lambda: next(_numbers))

    def __repr__(self) -> str:
        return f"v{self.number}"

    @staticmethod
    def like(array: Any, kind: str, views: tuple = ()) -> Value:
        """A value describing ``array`` (an array, or a Python number: no shape); a
        constant holds it."""
        constant = array if kind == "const" else None
        if not is_array(array):
            return Value(kind, views=views, constant=constant)
        flags = getattr(array, "flags", None)
        contiguous = bool(getattr(flags, "c_contiguous", False))
        return Value(kind, tuple(array.shape), array.dtype, contiguous, views, constant)


@dataclass(eq=False)
class Instruction:
    """``out = fn(*args, **kwargs)``, with Values where arrays go. A check has no
    ``out``: ``args[0]`` must hold, else the program raises ``error(*args[1:])``."""

    fn: Callable
    args: tuple
    kwargs: dict
    out: Value | None
    name: str  # what made it ("matmul", "setitem", ".reshape()"), for reading
    error: Callable[..., Exception] | None = None

    def values(self) -> list[Value]:
        """The values among the arguments, in order."""
        return [x for x in leaves((self.args, self.kwargs)) if type(x) is Value]


@dataclass
class Program:
    """What a compiled step runs: ``parameters``, passed at each call (inputs, states,
    host numbers); ``writes``: (state, the value its tensor's array holds after a call)."""

    instructions: list[Instruction]
    parameters: list[Value]
    returned: list[Value]
    writes: list[tuple[Value, Value]]

    @property
    def outputs(self) -> list[Value]:
        return self.returned + [value for _, value in self.writes]


def setitem(array: Any, index: Any, value: Any, out: Any = None) -> Any:
    """``array`` with ``array[index] = value`` (a trace's assignment), as a new array or
    into ``out`` (which may be ``array`` when nothing else needs its old values)."""
    if out is None:
        out = (
            array.copy()
            if hasattr(array, "copy")
            else array.__array_namespace__().asarray(array, copy=True)
        )
    elif out is not array:
        out[...] = array
    out[index] = value
    return out


def is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, type)


# --- the one walk over nested arguments ----------------------------------------------------
def tree_map(fn: Callable[[Any], Any], x: Any) -> Any:
    """``x`` (nested tuples, lists and dicts) with every leaf ``y`` replaced by ``fn(y)``."""
    kind = type(x)
    if kind is tuple or kind is list:
        return kind(tree_map(fn, item) for item in x)
    if kind is dict:
        return {key: tree_map(fn, item) for key, item in x.items()}
    return fn(x)


def leaves(x: Any) -> list:
    """The leaves of ``x`` (nested tuples, lists and dicts), in order."""
    found: list = []
    tree_map(found.append, x)
    return found


def producer_of(value: Value, made_by: dict[Value, Instruction], xp: Any) -> Value:
    """The value whose array ``value`` is: itself, or what it reshapes to its own shape
    (a linear layer's (-1, n) view of an (N, n) input)."""
    ins = made_by.get(value)
    while ins is not None and ins.fn is xp.reshape and type(ins.args[0]) is Value:
        if ins.args[0].shape != value.shape:
            break
        value = ins.args[0]
        ins = made_by.get(value)
    return value
