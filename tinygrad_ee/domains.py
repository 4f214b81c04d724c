"""Input domains: where an op's inputs may be drawn when its gradient is checked.

Every differentiable op declares one domain per tensor input (see ``ops.REGISTRY``);
the hypothesis strategies in ``tinygrad_ee.strategies`` draw from them. A domain
keeps finite differences honest: positive for log and sqrt, away from the kink of
relu and abs, away from zero for denominators, distinct values for max.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Domain:
    """Values in ``[low, high]``, at least ``margin`` away from each point in ``avoid``.

    ``distinct``: no two values closer than ``margin`` (ties make max non-smooth).
    ``kind``: "float" for differentiable inputs, "bool" for masks, "index" for
    integer indices (their range is set by the op's case, not here).
    """

    name: str
    low: float = -3.0
    high: float = 3.0
    avoid: tuple[float, ...] = ()
    margin: float = 0.05
    distinct: bool = False
    kind: str = "float"


REAL = Domain("real")
POSITIVE = Domain("positive", low=0.1, high=3.0)
NONZERO = Domain("nonzero", avoid=(0.0,), margin=0.2)
AWAY_FROM_ZERO = Domain("away from zero (kink)", avoid=(0.0,))
DISTINCT = Domain("distinct", distinct=True, margin=0.01)
EXPONENT = Domain("exponent", low=-2.0, high=2.0)
INSIDE_CLIP = Domain("away from the clip bounds -1 and 1", avoid=(-1.0, 1.0))
PROBABILITY = Domain("probability, away from 0 and 1", low=0.05, high=0.95)
BOOL = Domain("bool", kind="bool")
INDEX = Domain("index", kind="index")
