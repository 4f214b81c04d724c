"""The PyTorch references compute what our models compute: same loss from the same
parameters and data, same updates, same outputs (float64, small sizes). This is what
makes the engine / torch ratios of ``python -m benchmarks`` a like-for-like comparison."""

from __future__ import annotations

import numpy as np
import pytest
from tinygrad_ee.benchmarks import models, torch_reference

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed (pip install -e '.[bench]'): no reference to compare"
)

SPECS = models.model_specs(steps=6, batch=5, hidden=8)
STEPS = 3  # losses of three consecutive steps: the first checks the loss, the rest the updates


def _losses(step) -> list[float]:
    """The loss returned by each of STEPS calls: a float (hand-derived) or a 0-d tensor."""
    losses = [step() for _ in range(STEPS)]
    return [loss if isinstance(loss, float) else loss.item() for loss in losses]


@pytest.mark.parametrize("spec", SPECS, ids=[spec.name for spec in SPECS])
def test_torch_elementary_model_matches_the_engine(spec):
    case = models.make_case(spec, "float64")
    engine = models.engine_callables(case)
    elementary = torch_reference.callables(case, "cpu", "elementary")
    assert _losses(elementary.step) == pytest.approx(_losses(engine.step), rel=1e-10)
    np.testing.assert_allclose(elementary.infer().numpy(), engine.infer().numpy(), rtol=1e-9)


@pytest.mark.parametrize("cell", models.RECURRENT_CELLS)
def test_torch_nn_recurrent_layer_matches_the_engine(cell):
    case = models.make_case(models.recurrent_spec(cell, steps=6, batch=5, hidden=8), "float64")
    engine = models.engine_callables(case)
    layer = torch_reference.callables(case, "cpu", "nn")
    assert _losses(layer.step) == pytest.approx(_losses(engine.step), rel=1e-10)
    np.testing.assert_allclose(layer.infer().numpy(), engine.infer().numpy(), rtol=1e-9)


def test_hand_derived_reference_matches_the_engine():
    for spec in SPECS:
        case = models.make_case(spec, "float64")
        engine, hand = models.engine_callables(case), models.hand_callables(case)
        assert _losses(hand.step) == pytest.approx(_losses(engine.step), rel=1e-10), spec.name
        np.testing.assert_allclose(hand.infer(), engine.infer().numpy(), rtol=1e-9)


def test_no_nn_variant_for_the_feedforward_models():
    case = models.make_case(models.autoencoder_spec(), "float32")
    assert not torch_reference.has_variant(case, "nn")
    with pytest.raises(ValueError, match="only recurrent"):
        torch_reference.callables(case, "cpu", "nn")
