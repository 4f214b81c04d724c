"""The README's examples run as written, and the functions it lists exist."""

import re
from pathlib import Path

import tinygrad_ee as tg

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_engine_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README.md has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    assert namespace["w"].grad.shape == (3, 2)
    assert namespace["prediction"].shape == (4,)


def test_readme_own_op_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (block,) = [b for b in blocks if "check_op(swish)" in b]
    namespace: dict = {}
    exec(compile(block, str(README), "exec"), namespace)  # check_op passes: no error
    assert "swish" not in tg.REGISTRY


def test_readme_model_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (block,) = [b for b in blocks if "SequenceClassifier(" in b]
    namespace: dict = {}
    exec(compile(block, str(README), "exec"), namespace)
    assert namespace["model"].cell.hidden_weight.grad.shape == (128, 3 * 128)
    assert 0 < namespace["loss"].item() < 10


def test_every_function_the_readme_lists_is_in_tinygrad_ee():
    text = README.read_text()
    start = text.index("):", text.index("- Ops (functions in `tinygrad_ee`"))
    ops_list = text[start : text.index("\n- ", start)]
    # Code spans of names ("exp log sqrt", "permute/transpose") or of calls
    # ("split(x, 2)"), not the other examples ("x @ weight + bias").
    names = set()
    for span in re.findall(r"`([^`]+)`", ops_list):
        call = re.fullmatch(r"([a-z_]+)\(.*\)", span, flags=re.S)
        if call:
            names.add(call.group(1))
        elif re.fullmatch(r"[a-z_/\s]+", span):
            names.update(name for name in re.split(r"[/\s]+", span) if name)
    assert {"exp", "softplus", "log_sigmoid", "cross_entropy", "unbind"} <= names
    missing = sorted(name for name in names if not callable(getattr(tg, name, None)))
    assert not missing, f"README lists {missing} as functions of tinygrad_ee"
