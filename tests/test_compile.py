"""Compiled steps (tg.compile): a replay computes what the eager step computes.

The eager engine is the oracle: each test runs the same step eagerly and compiled, from
the same start, and compares the parameters (bit for bit where the compiled program
keeps the order of every operation; to 1e-12 in float64 where it reorders a sum).
"""

from __future__ import annotations

import contextlib
import dataclasses
import operator

import numpy as np
import pytest
from conftest import CUDA_MISSING
from hypothesis import given, settings
from hypothesis import strategies as st
from tinygrad_ee.models import FourGramLanguageModel, SequenceClassifier, SparseAutoencoder

import tinygrad_ee as tg
from tinygrad_ee import REGISTRY, nn, optim
from tinygrad_ee.backend import _BACKENDS, NumpyBackend
from tinygrad_ee.compiler.ir import setitem
from tinygrad_ee.compiler.passes import Options
from tinygrad_ee.strategies import arrays, op_cases

MODELS = ["autoencoder", "language_model", "rnn", "lstm", "gru"]
RECURRENT = {"rnn", "lstm", "gru"}
# Every optimisation off but one: what each one alone must leave unchanged.
ONLY = {
    name: {field.name: field.name == name for field in dataclasses.fields(Options)}
    for name in (
        "merge_duplicates",
        "fold_constants",
        "dead_code",
        "fold_casts",
        "typed_numbers",
        "reuse_buffers",
    )
}


def make_model(kind: str, dtype: str, device: str) -> nn.Module:
    nn.seed(0, device)
    if kind == "autoencoder":
        return SparseAutoencoder(24, 6, device=device, dtype=dtype)
    if kind == "language_model":
        return FourGramLanguageModel(20, 4, 8, device=device, dtype=dtype)
    common = {"device": device, "dtype": dtype}
    return SequenceClassifier(kind, 3, 4, hidden_size=6, head_sizes=(5,), **common)


def batches(kind: str, dtype: str, device: str, count: int, size: int = 5, seed: int = 1):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        if kind == "autoencoder":
            yield (tg.Tensor(rng.uniform(0.1, 0.9, (size, 24)).astype(dtype), device=device),)
        elif kind == "language_model":
            yield (
                tg.Tensor(rng.integers(0, 20, (size, 3)), device=device),
                tg.Tensor(rng.integers(0, 20, size), device=device),
            )
        else:
            x = rng.normal(size=(size, 7, 3)).astype(dtype)
            yield tg.Tensor(x, device=device), tg.Tensor(rng.integers(0, 4, size), device=device)


def train(kind, dtype, device, compiled, steps=50, optimizer="sgd", clip=None, size=5, **options):
    """The model after ``steps`` steps, the losses, and the (compiled) step (whose
    ``optimizer`` attribute is the optimiser)."""
    model = make_model(kind, dtype, device)
    if optimizer == "sgd":
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.85)
    else:
        opt = optim.Adam(model.parameters(), lr=0.01)

    def step(*batch):
        opt.zero_grad()
        args = (*batch, 5e-4, 2.0, 0.025) if kind == "autoencoder" else batch
        loss = model.loss(*args)
        loss.backward()
        if clip:
            optim.clip_grad_norm(model.parameters(), clip)
        opt.step()
        return loss

    run = tg.compile(step, **options) if compiled else step
    losses = [run(*batch).item() for batch in batches(kind, dtype, device, steps, size)]
    step.optimizer = opt
    return model, losses, run


def assert_same_parameters(first: nn.Module, second: nn.Module, tolerance: float = 0.0) -> None:
    for (name, a), b in zip(first.named_parameters(), second.parameters()):
        if tolerance:
            np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=tolerance, atol=tolerance)
        else:
            np.testing.assert_array_equal(b.numpy(), a.numpy(), err_msg=name)


# --- compiled equals eager ----------------------------------------------------------------
@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compiled_training_equals_eager_bit_for_bit(kind, dtype):
    """50 steps, every optimisation that keeps the order of operations on."""
    eager, eager_losses, _ = train(kind, dtype, "cpu", compiled=False)
    compiled, losses, step = train(kind, dtype, "cpu", compiled=True, stack_products=False)
    assert losses == eager_losses
    assert_same_parameters(eager, compiled)
    assert step.traces == 1  # one program, replayed 49 times


@pytest.mark.parametrize("kind", sorted(RECURRENT))
def test_stacked_weight_gradients_equal_eager_to_1e_12(kind):
    """Stacking reorders the sum over time steps of each recurrent weight's gradient."""
    eager, eager_losses, _ = train(kind, "float64", "cpu", compiled=False)
    compiled, losses, step = train(kind, "float64", "cpu", compiled=True)
    np.testing.assert_allclose(losses, eager_losses, rtol=1e-12)
    assert_same_parameters(eager, compiled, tolerance=1e-12)
    assert "stacked matmul" in step.source()


@pytest.mark.parametrize("kind", MODELS)
def test_strict_backend_replays(kind):
    eager, eager_losses, _ = train(kind, "float64", "strict", compiled=False, steps=6)
    compiled, losses, step = train(kind, "float64", "strict", compiled=True, steps=6)
    np.testing.assert_allclose(losses, eager_losses, rtol=1e-12)
    assert_same_parameters(eager, compiled, tolerance=1e-12)
    assert "out=" not in step.source()  # array-api-strict has no out=: replayed functionally


@pytest.mark.parametrize("optimisation", sorted(ONLY))
@pytest.mark.parametrize("kind", ["autoencoder", "lstm"])
def test_each_optimisation_alone_keeps_the_result(kind, optimisation):
    eager, _, _ = train(kind, "float32", "cpu", compiled=False, steps=4)
    compiled, _, _ = train(kind, "float32", "cpu", compiled=True, steps=4, **ONLY[optimisation])
    assert_same_parameters(eager, compiled)


@pytest.mark.parametrize("kind", ["autoencoder", "gru"])
def test_adam_and_clipping_replay(kind):
    eager, eager_losses, _ = train(kind, "float64", "cpu", False, 12, optimizer="adam", clip=0.5)
    compiled, losses, _ = train(
        kind, "float64", "cpu", True, 12, optimizer="adam", clip=0.5, stack_products=False
    )
    assert losses == eager_losses
    assert_same_parameters(eager, compiled)


def test_the_first_call_is_the_eager_step_and_later_calls_replay():
    model = make_model("autoencoder", "float64", "cpu")
    calls = []

    def step(x):
        calls.append(1)  # Python in the step runs only when it is traced
        return model.loss(x, 0.0, 0.0, 0.5)

    run = tg.compile(step)
    (x,) = next(batches("autoencoder", "float64", "cpu", 1))
    first, second = run(x).item(), run(x).item()
    assert first == second == model.loss(x, 0.0, 0.0, 0.5).item()
    assert len(calls) == 1


# --- the program -------------------------------------------------------------------------
def _count(source: str, name: str) -> int:
    return sum(line.endswith(f"# {name}") for line in source.splitlines())


def test_dead_code_drops_the_gradient_of_the_input_data():
    """x @ W + b: the backward needs g^T x for W, not g W^T for the data x."""
    _, _, kept = train("autoencoder", "float32", "cpu", True, steps=2, dead_code=False)
    _, _, step = train("autoencoder", "float32", "cpu", True, steps=2)
    # forward 2 products; backward: 2 weight gradients + the hidden layer's input gradient
    assert _count(step.source(), "matmul") == 5
    assert _count(kept.source(), "matmul") == 6


def test_a_comparison_only_a_cast_reads_is_computed_as_the_cast():
    """Each sigmoid's mask, astype(z >= 0, float): one call, into a float buffer."""
    _, _, kept = train("lstm", "float32", "cpu", True, steps=2, fold_casts=False)
    _, _, step = train("lstm", "float32", "cpu", True, steps=2)
    casts = _casts_of_booleans(kept)
    folded = [line for line in step.source().splitlines() if line.endswith(" as float32")]
    assert casts > 10 and _casts_of_booleans(step) == 0
    assert len(folded) == casts
    assert all(", out=b" in line for line in folded)  # written as float, not cast after


def _casts_of_booleans(step) -> int:
    return sum(
        ins.name == "astype" and ins.args[0].dtype == np.bool_
        for ins in step.program().instructions
    )


def test_a_comparison_read_elsewhere_keeps_its_cast():
    def step(x):
        mask = x >= 0
        return (tg.where(mask, x, -x) * tg.astype(mask, dtype="float64")).sum()

    run = tg.compile(step)
    for values in ([1.0, -2.0, 3.0], [-1.0, 2.0, 0.0]):
        x = tg.Tensor(np.array(values))
        assert run(x).item() == step(x).item()
    assert _count(run.source(), "astype") == 1


def _numbers_in_elementwise_calls(step) -> int:
    return sum(
        type(a) in (int, float)
        for ins in step.program().instructions
        if ins.out is not None and ins.out.shape and NumpyBackend().can_alias(ins.fn)
        for a in ins.args
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numbers_become_constants_of_the_arrays_dtype(dtype):
    _, _, kept = train("gru", dtype, "cpu", True, steps=2, typed_numbers=False)
    _, _, step = train("gru", dtype, "cpu", True, steps=2)
    assert _numbers_in_elementwise_calls(kept) > 50  # 1 + e, z >= 0, x * -1, ...
    assert _numbers_in_elementwise_calls(step) == 0
    typed = [v for ins in step.program().instructions for v in ins.args if _is_typed(v)]
    assert typed and all(v.constant.dtype == np.dtype(dtype) for v in typed)


def _is_typed(v) -> bool:
    return getattr(v, "kind", None) == "const" and getattr(v.constant, "shape", None) == ()


def test_numbers_equal_but_for_their_sign_stay_apart():
    def step(x):
        return x * 0.0, x * -0.0, x - 0.0, x + -0.0

    run = tg.compile(step)
    for values in ([1.0, 2.0], [-3.0, 0.0]):
        x = tg.Tensor(np.array(values))
        for compiled, eager in zip(run(x), step(x)):
            assert compiled.numpy().tobytes() == eager.numpy().tobytes()  # signs of zeros too
    assert _numbers_in_elementwise_calls(run) == 0


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_a_typed_number_computes_what_the_python_number_does(dtype):
    """NumPy converts a Python number to the arrays' dtype (NEP 50): the constant must
    give the same bits, or not be made (a number the dtype cannot hold)."""
    backend = NumpyBackend()
    rng = np.random.default_rng(0)
    x = (rng.normal(size=50) * 10.0 ** rng.integers(-5, 5, 50)).astype(dtype)
    numbers = [0, 1, -1, 4, 2**24 + 1, 2**60, 0.1, 1e-6, 0.975, -0.0, 1e-45, 3.4e38, 1e39]
    numbers += [float("inf"), float("nan")]
    ufuncs = [np.multiply, np.add, np.subtract, np.divide, np.greater_equal, np.maximum]
    made = 0
    for number in numbers:
        for ufunc in ufuncs:
            typed = backend.typed_number(ufunc, number, x.dtype)
            if typed is None:
                continue
            made += 1
            with np.errstate(all="ignore"):
                for expected, got in (
                    (ufunc(x, number), ufunc(x, typed)),
                    (ufunc(number, x), ufunc(typed, x)),
                ):
                    assert got.dtype == expected.dtype
                    assert got.tobytes() == expected.tobytes(), (ufunc, number)
    assert made > len(ufuncs) * 8
    assert backend.typed_number(np.multiply, 2**24 + 1, np.float32) is None  # not exact
    assert backend.typed_number(np.multiply, 1e39, np.float32) is None  # not finite
    assert backend.typed_number(np.multiply, 3, np.int64) is None  # only floating arrays


def test_new_parameter_values_go_into_the_parameters_own_arrays():
    model, _, step = train("autoencoder", "float64", "cpu", True, steps=3)
    arrays = [p.data for p in model.parameters()]
    (x,) = next(batches("autoencoder", "float64", "cpu", 1, seed=5))
    before = [a.copy() for a in arrays]
    step(x)
    for p, array, old in zip(model.parameters(), arrays, before):
        assert p.data is array  # updated in place: state_dict() sees it
        assert not np.array_equal(array, old)
    assert step.traces == 1


def test_buffers_are_reused():
    """The LSTM's step has thousands of results, held in a few dozen buffers."""
    _, _, step = train("lstm", "float32", "cpu", True, steps=2)
    program = step.program()
    results = sum(ins.out is not None for ins in program.instructions)
    assert results > 300
    assert 0 < len(program.buffers) < results / 5


# --- guards ------------------------------------------------------------------------------
def test_a_new_shape_gets_its_own_program():
    eager, eager_losses, eager_step = train("gru", "float64", "cpu", False, steps=3, size=5)
    compiled, losses, step = train("gru", "float64", "cpu", True, steps=3, size=5)
    for batch in batches("gru", "float64", "cpu", 3, size=3, seed=9):  # the smaller last batch
        eager_losses.append(eager_step(*batch).item())
        losses.append(step(*batch).item())
    for batch in batches("gru", "float64", "cpu", 2, size=5, seed=10):  # and back
        eager_losses.append(eager_step(*batch).item())
        losses.append(step(*batch).item())
    assert step.traces == 2  # size 3 traced; size 5 again: its program, replayed
    np.testing.assert_allclose(losses, eager_losses, rtol=1e-12)
    assert_same_parameters(eager, compiled, tolerance=1e-12)


@pytest.mark.parametrize("read", ["item", "numpy", "bool", "float"])
def test_reading_a_value_inside_the_step_is_refused(read):
    model = make_model("autoencoder", "float64", "cpu")

    def step(x):
        loss = model.loss(x, 0.0, 0.0, 0.5)
        if read == "item":
            loss.item()
        elif read == "numpy":
            loss.numpy()
        elif read == "bool":
            bool(loss > 1)
        else:
            float(loss.data)
        return loss

    (x,) = next(batches("autoencoder", "float64", "cpu", 1))
    with pytest.raises(tg.TraceError, match="inside a compiled step, at .*test_compile.py"):
        tg.compile(step)(x)


def test_a_replaced_parameter_retraces():
    model = make_model("autoencoder", "float64", "cpu")
    step = tg.compile(lambda x: model.loss(x, 0.0, 0.0, 0.5))
    (x,) = next(batches("autoencoder", "float64", "cpu", 1))
    step(x)
    model.decoder.bias = nn.Parameter(np.full(24, 3.0))  # a new tensor: the program names the old
    assert step(x).item() == model.loss(x, 0.0, 0.0, 0.5).item()
    assert step.traces == 2


def test_load_state_dict_and_a_changed_learning_rate_reach_the_program():
    model, _, step = train("rnn", "float64", "cpu", True, steps=2)
    saved = model.state_dict()
    batch = next(batches("rnn", "float64", "cpu", 1, seed=3))
    step(*batch)
    model.load_state_dict(saved)  # new arrays: the old program can never run again
    reference = make_model("rnn", "float64", "cpu")
    reference.load_state_dict(saved)
    assert step(*batch).item() == reference.loss(*batch).item()
    assert step.traces == 2
    # the optimiser's lr is read at every call (no retrace): lr 0 leaves the weights
    step.fn.optimizer.lr, step.fn.optimizer.momentum = 0.0, 0.0
    before = model.state_dict()
    step(*batch)
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert step.traces == 2


def test_an_out_of_range_index_is_caught_at_replay():
    model = make_model("language_model", "float64", "cpu")
    step = tg.compile(lambda context, targets: model.loss(context, targets))
    context, targets = next(batches("language_model", "float64", "cpu", 1))
    step(context, targets)
    bad = tg.Tensor(np.full((5, 3), 20))
    with pytest.raises(IndexError, match=r"must lie in \[0, 20\), got values from 20 to 20"):
        step(bad, targets)


def test_anomaly_mode_works_in_a_compiled_step():
    model = make_model("autoencoder", "float64", "cpu")
    step = tg.compile(lambda x: model.loss(x, 0.0, 0.0, 0.5))
    x = tg.Tensor(np.full((5, 24), 0.5))
    with tg.detect_anomaly():
        step(x)
        step(x)
        nan = tg.Tensor(np.full((5, 24), np.nan))
        with pytest.raises(tg.AnomalyError, match="was given nan"):
            step(nan)
    assert step.traces == 1


def test_gradients_of_arguments_are_set_at_every_call():
    step = tg.compile(lambda x: (x * x).sum().backward())
    for value in (1.0, 2.0, 3.0):
        x = tg.Tensor(np.full(3, value), requires_grad=True)
        step(x)
        np.testing.assert_array_equal(x.grad.numpy(), np.full(3, 2 * value))


def test_arguments_must_be_tensors_or_hashable():
    with pytest.raises(TypeError, match="wrap arrays in a Tensor"):
        tg.compile(lambda x: x)(np.zeros(3))


# --- random programs from the op registry ---------------------------------------------------
def _redraw(draw, tensors, spec):
    """New values of the same shapes and domains for an op's inputs."""
    fresh = []
    for tensor, domain in zip(tensors, spec.domains * len(tensors)):
        high = int(tensor.numpy().max()) + 1 if domain.kind == "index" and tensor.size else 1
        values = draw(arrays(tensor.shape, domain, high=max(high, 1)))
        fresh.append(tg.Tensor(values, requires_grad=tensor.requires_grad))
    return fresh


DIFFERENTIABLE = sorted(name for name in REGISTRY if name not in ("astype",))


@settings(max_examples=25)
@given(st.data())
def test_random_programs_replay_like_eager(data):
    """Several ops, their outputs combined with shared intermediates and broadcasting;
    the step computes every input's gradient. Replayed on new inputs of the same shapes."""
    names = data.draw(st.lists(st.sampled_from(DIFFERENTIABLE), min_size=2, max_size=4))
    cases = [(REGISTRY[name], *data.draw(op_cases(REGISTRY[name]))) for name in names]
    weights = [data.draw(st.floats(-2, 2)) for _ in cases]

    def program(*tensors):
        total, start, shared = None, 0, []
        for (spec, args, params), weight in zip(cases, weights):
            out = spec.function(*tensors[start : start + len(args)], **params)
            start += len(args)
            pieces = out if isinstance(out, list) else [out]
            floats = [p.tanh().sum() for p in pieces if p.dtype.kind == "f"]
            term = sum(floats, tg.zeros((), dtype="float64"))
            shared.append(term)
            total = term * weight if total is None else total + term * weight
        return total + shared[0] * shared[-1]  # a shared intermediate, used twice

    def gradients(*tensors):
        for t in tensors:
            t.grad = None
        program(*tensors).backward()
        return [t.grad for t in tensors if t.requires_grad]

    step = tg.compile(gradients)
    for draw_number in range(3):
        if draw_number == 0:
            inputs = [t for _, args, _ in cases for t in args]
        else:
            inputs = [t for spec, args, _ in cases for t in _redraw(data.draw, args, spec)]
        compiled = step(*inputs)
        eager = gradients(*[tg.Tensor(t.numpy(), requires_grad=t.requires_grad) for t in inputs])
        for c, e in zip(compiled, eager):
            np.testing.assert_allclose(c.numpy(), e.numpy(), rtol=1e-12, atol=1e-12)
    assert step.traces == 1


# --- GPU paths, emulated on the CPU ----------------------------------------------------------
class FakeGraph:
    """A launch recomputes the captured work into the arrays it used when captured."""

    def __init__(self, run, env):
        self.run, self.env, self.captured = run, env, dict(env)

    def launch(self):
        self.run()
        for key, array in list(self.env.items()):
            old = self.captured.get(key)
            if isinstance(old, np.ndarray) and old is not array:
                old[...] = array
                self.env[key] = old


class FakeGraphs:
    """CUDA graphs, emulated: capturing runs the work (so that its arrays exist) but
    leaves every array as it was, as a capture that only records kernels would."""

    @contextlib.contextmanager
    def recording(self):
        yield

    def capture(self, run, env):
        arrays = [(a, a.copy()) for a in env.values() if isinstance(a, np.ndarray)]
        run()
        for array, contents in arrays:
            array[...] = contents
        return FakeGraph(run, env)


class FakeGPU(NumpyBackend):
    """NumPy with the GPU's program paths: 'fused' chains (run op by op) and graphs
    that, like CuPy's, cannot hold matrix products."""

    device = "fakegpu"

    def fuse(self, function):
        def kernel(*args):  # like cupy.fuse: one kernel, so every result has the one shape
            shape = np.broadcast_shapes(*(np.shape(a) for a in args))
            return tuple(np.array(np.broadcast_to(r, shape)) for r in function(*args))

        return kernel

    def fusable(self, fn):
        return self.can_alias(fn) and fn is not setitem

    def capturable(self, fn):
        return fn not in (np.matmul, operator.matmul)

    def graphs(self):
        return FakeGraphs()


@pytest.fixture
def fake_gpu():
    backend = _BACKENDS["fakegpu"] = FakeGPU()
    yield backend
    del _BACKENDS["fakegpu"]


@pytest.mark.parametrize("kind", MODELS)
def test_fused_and_graph_replay_equal_eager(fake_gpu, kind):
    eager, eager_losses, _ = train(kind, "float64", "cpu", compiled=False, steps=8)
    compiled, losses, step = train(kind, "float64", fake_gpu, True, steps=8, stack_products=False)
    assert losses == eager_losses
    assert_same_parameters(eager, compiled)
    program = step.program()
    assert program.run.failure is None  # it ran as graphs, not as the plain fallback
    assert sum(kind == "segment" for kind, _ in program.run.steps) >= 2
    assert "fused" in program.source


def test_a_changed_learning_rate_recaptures_the_graphs(fake_gpu):
    model, _, step = train("rnn", "float64", fake_gpu, True, steps=3)
    first = step.program().run.launch
    step.fn.optimizer.lr = 0.0  # baked into the kernels: the graphs are captured again
    batch = next(batches("rnn", "float64", fake_gpu, 1, seed=4))
    before = model.state_dict()
    step(*batch)
    assert step.program().run.launch is not first
    step.fn.optimizer.momentum = 0.0
    step(*batch)
    after = model.state_dict()
    assert not all(np.array_equal(before[k], after[k]) for k in before)  # momentum still moved
    step(*batch)
    assert all(np.array_equal(after[k], v) for k, v in model.state_dict().items())


@pytest.mark.skipif(CUDA_MISSING is not None, reason=f"no CUDA: {CUDA_MISSING}")
@pytest.mark.parametrize("kind", MODELS)
def test_cuda_fused_graph_replay_equals_eager(kind):
    """On a real GPU: fused kernels and CUDA graphs, against eager CuPy (fused kernels
    may round differently: compared to 1e-10 in float64)."""
    eager, eager_losses, _ = train(kind, "float64", "cuda", compiled=False, steps=8)
    compiled, losses, step = train(kind, "float64", "cuda", True, steps=8, stack_products=False)
    np.testing.assert_allclose(losses, eager_losses, rtol=1e-10)
    assert_same_parameters(eager, compiled, tolerance=1e-10)
    program = step.program()
    assert program.run.failure is None, program.run.failure
    failures = [f.failure for f in program.bound.values() if getattr(f, "failure", None)]
    assert not failures, failures


@pytest.mark.parametrize("kind", MODELS)
def test_programs_need_no_host_sync(kind):
    """A CUDA graph cannot read the device from the host: no program of a training step
    assigns through a boolean mask (which counts the mask on the host first)."""
    _, _, step = train(kind, "float64", "cpu", True, steps=2)
    for ins in step.program().instructions:
        if ins.fn is setitem:
            index = ins.args[1] if isinstance(ins.args[1], tuple) else (ins.args[1],)
            masks = [i for i in index if getattr(i, "dtype", None) == np.dtype(bool)]
            assert not masks, f"{ins.name} assigns through a boolean mask"


def test_a_stack_of_0d_tensors_replays_like_eager():
    """The parts of a stack are copied into their slice of it: a 0-d part's slice of the
    1-d result must stay a view (b[0] of a 1-d NumPy array is a scalar, not a view)."""

    def step(a, b):
        return (tg.stack([a, b], axis=0).tanh() * tg.Tensor(np.array([2.0, 3.0]))).sum()

    compiled = tg.compile(step)
    for a, b in ((0.5, -0.25), (1.5, 2.0)):
        inputs = tg.Tensor(np.array(a)), tg.Tensor(np.array(b))
        assert compiled(*inputs).item() == step(*inputs).item()
    assert compiled.traces == 1
