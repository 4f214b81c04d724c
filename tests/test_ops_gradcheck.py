"""Every registered op, gradchecked in float64 on random shapes and on every backend."""

import inspect

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_ee as tg
from tinygrad_ee.domains import Domain
from tinygrad_ee.strategies import KINDS, describe, op_cases


def test_registry_lists_every_required_op():
    required = (
        "add sub mul div neg pow exp log sqrt matmul sum mean max reshape permute getitem "
        "gather concat stack split where clip sigmoid tanh relu softmax log_softmax logsumexp"
    ).split()
    missing = [name for name in required if name not in tg.REGISTRY]
    assert not missing, f"required ops missing from the registry: {missing}"


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
@given(data=st.data())
def test_gradient_matches_finite_differences(name, device, data):
    spec = tg.REGISTRY[name]
    args, params = data.draw(op_cases(spec, device), label="case")
    try:
        tg.gradcheck(lambda *xs: spec.function(*xs, **params), *args)
    except tg.GradcheckError as error:
        raise AssertionError(f"{name} on {device}, {describe(args, params)}: {error}") from None
