"""The worked example of docs/testing-your-ops.md, benchmarks/lstm_op.py: a hand-derived
LSTM cell as one op (`tg.op`), against the composed cell, through compiled steps, and the
document run as written (its planted mistakes caught by `check_op`)."""

import inspect
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from tinygrad_ee.benchmarks import models
from tinygrad_ee.benchmarks.lstm_op import classifiers, compiled_steps, lstm_cell

import tinygrad_ee as tg
from tinygrad_ee.domains import REAL
from tinygrad_ee.testing import OpCheckError, check_op

DOC = Path(__file__).resolve().parents[1] / "docs" / "testing-your-ops.md"


def caught(op, **options) -> str:
    with pytest.raises(OpCheckError) as error:
        check_op(op, **options)
    return str(error.value)


def test_the_lstm_cell_op_matches_the_composed_cell_in_a_whole_classifier(device):
    """The classifier with the hand-derived cell against the one composed of engine ops
    (an independent derivation): the loss and every parameter's gradient, float64, T = 6."""
    spec = models.recurrent_spec("lstm", steps=6, batch=3, hidden=5)
    case = models.make_case(spec, "float64")
    x = tg.Tensor(case.data["x"], device=device)
    targets = tg.Tensor(case.data["targets"], device=device)
    results = []
    for model in classifiers(case, device).values():
        loss = model.loss(x, targets)
        loss.backward()
        results.append((loss.item(), {k: p.grad.numpy() for k, p in model.named_parameters()}))
    (composed_loss, composed), (fused_loss, fused) = results
    assert fused_loss == pytest.approx(composed_loss, rel=1e-12)
    for name, grad in composed.items():
        np.testing.assert_allclose(fused[name], grad, rtol=1e-9, atol=1e-12, err_msg=name)


def test_the_lstm_cell_op_trains_through_compiled_steps_like_the_composed_cell():
    spec = models.recurrent_spec("lstm", steps=5, batch=4, hidden=3)
    steps = compiled_steps(models.make_case(spec, "float64"), "cpu")
    losses = {name: [step().item() for _ in range(4)] for name, step in steps.items()}
    composed, fused = losses.values()
    np.testing.assert_allclose(fused, composed, rtol=1e-10)
    assert composed[-1] < composed[0]
    assert all(step.traces == 1 for step in steps.values())


# --- docs/testing-your-ops.md, run as written ------------------------------------------------
def test_the_document_runs_as_written_and_shows_what_check_op_says():
    """Every python block, in order, in one namespace; a block marked "# raises
    OpCheckError" raises it, with the message of the text block after it (exactly under
    the derandomised CI profile: the very call the document shows)."""
    text = DOC.read_text()
    blocks = re.findall(r"```(python|text)\n(.*?)```", text, flags=re.S)
    namespace: dict = {}
    for (kind, code), after in zip(blocks, [*blocks[1:], ("", "")]):
        if kind != "python":
            continue
        if not code.startswith("# raises OpCheckError"):
            exec(compile(code, str(DOC), "exec"), namespace)
            continue
        with pytest.raises(OpCheckError) as caught:
            exec(compile(code, str(DOC), "exec"), namespace)
        shown = after[1].strip()
        if settings().derandomize:
            assert str(caught.value) == shown
        assert str(caught.value).split(":")[:2] == shown.split(":")[:2]
    assert namespace["lstm_cell"] is lstm_cell  # the fixed op, imported at the end


def test_the_documents_first_derivation_is_the_benchmarked_op_but_for_one_line():
    text = DOC.read_text()
    (planted,) = [
        b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "first der" in b
    ]
    mistake = "dc = dc_next  # the first derivation"
    correct = "dc = dc_next + dh * o * (1 - t * t)  # c_next reaches the loss through h_next too"
    assert f"-        {mistake}\n+        {correct}" in text  # the fix the document shows
    source = Path(models.__file__).with_name("lstm_op.py").read_text()
    assert planted.split("\n\n\n", 1)[1].replace(mistake, correct) in source


# --- a transposed product, in the worked example's LSTM cell --------------------------------
def test_a_transposed_product_is_caught_as_the_document_says():
    """benchmarks/lstm_op.py's cell with dw = da^T h for h^T da (the missing term, the
    document's first derivation, is run by tests/test_custom_ops.py)."""
    source = inspect.getsource(lstm_cell.spec.forward)
    right = "dw = xp.matmul(xp.matrix_transpose(h), da)"
    assert right in source
    namespace = {"tg": tg, "REAL": REAL}
    exec(source.replace(right, "dw = xp.matmul(xp.matrix_transpose(da), h)"), namespace)
    sizes = st.integers(1, 3)
    shapes = st.tuples(sizes, sizes).map(
        lambda bh: ((bh[0], 4 * bh[1]), bh, bh, (bh[1], 4 * bh[1]))
    )
    message = caught(namespace["lstm_cell"], shapes=shapes)
    assert message.split("\n")[0] in DOC.read_text()
