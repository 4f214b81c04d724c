"""Every registered op passes `check_op` (gradients against finite differences, float32
against float64, compiled against eager, anomaly mode), on every backend: the same kit
users run on their own ops."""

import inspect

import pytest
from hypothesis import settings

import tinygrad_ee as tg
from tinygrad_ee import ops
from tinygrad_ee.domains import Domain
from tinygrad_ee.strategies import KINDS
from tinygrad_ee.testing import check_op


def test_registry_lists_every_required_op():
    required = (
        "add sub mul div neg pow exp log sqrt matmul sum mean max reshape permute getitem "
        "gather concat stack split where clip sigmoid tanh relu softmax log_softmax logsumexp"
    ).split()
    missing = [name for name in required if name not in tg.REGISTRY]
    assert not missing, f"required ops missing from the registry: {missing}"


def test_every_op_defined_in_ops_is_registered():
    """An op made with the plain `op` decorator in ops.py would be registered nowhere,
    and so checked by nothing here: the engine's ops use ``@REGISTRY.op``."""
    made = {value.spec.name: value.spec for value in vars(ops).values() if hasattr(value, "spec")}
    assert made, "no op found in tinygrad_ee.ops"
    unregistered = sorted(name for name, spec in made.items() if tg.REGISTRY.get(name) is not spec)
    assert not unregistered, f"ops defined in ops.py but not in REGISTRY: {unregistered}"


@pytest.mark.parametrize("name", sorted(tg.REGISTRY))
def test_every_op_declares_a_domain_per_input_and_a_known_kind(name):
    spec = tg.REGISTRY[name]
    assert spec.domains, f"op {name!r} declares no input domain"
    assert all(isinstance(d, Domain) for d in spec.domains), f"op {name!r}: domains must be Domain"
    assert spec.kind in KINDS, f"op {name!r}: no case builder for kind {spec.kind!r}"
    # The forward's tensor inputs are its parameters without defaults, after the backend.
    parameters = list(inspect.signature(spec.forward).parameters.values())[1:]
    if not any(p.kind is p.VAR_POSITIONAL for p in parameters):  # concat, stack: any count
        inputs = [p.name for p in parameters if p.default is p.empty]
        assert len(spec.domains) == len(inputs), (
            f"op {name!r} takes tensors {inputs} but declares {len(spec.domains)} domains"
        )


@pytest.mark.parametrize("name", sorted(tg.REGISTRY))
def test_every_op_passes_check_op(name, device):
    """As many examples as the hypothesis profile says (CI: 30 per op and backend)."""
    check_op(tg.REGISTRY[name], devices=[device], max_examples=settings().max_examples)
