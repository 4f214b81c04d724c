"""Learning-rate schedules: values against their formulas worked by hand, what step()
does to the optimiser, argument checks, and saving and loading."""

import math

import numpy as np
import pytest

import tinygrad_ee as tg
from tinygrad_ee import nn
from tinygrad_ee.optim import SGD, Adam, Constant, CosineDecay, StepDecay


def optimizer(lr=0.1):
    return SGD([nn.Parameter(np.zeros(2))], lr=lr)


# --- values -----------------------------------------------------------------------------


def test_cosine_decay_with_warm_up_at_chosen_counts():
    # base 0.1, min 0.01, warm-up 2, total 10: the cosine runs over D = 8 counts.
    schedule = CosineDecay(optimizer(0.1), total=10, warmup=2, min_lr=0.01)
    expected = {
        0: 0.1 / 3,  # 0.1 * 1/3
        1: 0.2 / 3,  # 0.1 * 2/3
        2: 0.1,  # cos(0) = 1: the decay starts at base_lr
        4: 0.01 + 0.09 * (1 + math.sqrt(0.5)) / 2,  # cos(pi/4) = sqrt(1/2): 0.0868198...
        6: 0.055,  # cos(pi/2) = 0: halfway between 0.1 and 0.01
        10: 0.01,  # cos(pi) = -1: min_lr
        25: 0.01,  # and stays there
    }
    for n, lr in expected.items():
        assert schedule.at(n) == pytest.approx(lr, rel=1e-14, abs=1e-17), n
    assert expected[4] == pytest.approx(0.08681980515339464, rel=1e-15)


def test_step_decay_with_and_without_warm_up():
    plain = StepDecay(optimizer(1.0), every=3, factor=0.5)
    assert [plain.at(n) for n in range(8)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]
    warm = StepDecay(optimizer(1.0), every=3, factor=0.5, warmup=2)
    assert [warm.at(n) for n in range(9)] == [1 / 3, 2 / 3, 1, 1, 1, 0.5, 0.5, 0.5, 0.25]


def test_constant_is_the_warm_up_alone():
    schedule = Constant(optimizer(1.0), warmup=3)
    assert [schedule.at(n) for n in range(6)] == [0.25, 0.5, 0.75, 1, 1, 1]
    assert Constant(optimizer(0.3)).at(5) == 0.3


def test_step_sets_the_optimisers_lr_from_the_count():
    opt = optimizer(0.1)
    schedule = CosineDecay(opt, total=6, warmup=1)
    assert opt.lr == 0.05  # building it sets lr = at(0) = 0.1 * 1/2
    seen = [opt.lr]
    for _ in range(7):
        schedule.step()
        seen.append(opt.lr)
    assert schedule.count == 7
    assert seen == [schedule.at(n) for n in range(8)]
    assert seen[1] == 0.1 and seen[6] == 0.0 and seen[7] == 0.0


def test_without_warm_up_building_a_schedule_leaves_lr_as_it_was():
    opt = optimizer(0.37)
    StepDecay(opt, every=2)
    assert opt.lr == 0.37


def test_the_schedule_reaches_the_parameters():
    """lr halves every step: SGD without momentum moves p by lr * g = 1, 1/2, 1/4."""
    p = nn.Parameter(np.zeros(1))
    opt = SGD([p], lr=1.0)
    schedule = StepDecay(opt, every=1, factor=0.5)
    for _ in range(3):
        p.grad = tg.Tensor(np.array([-1.0]))
        opt.step()
        schedule.step()
    assert p.numpy().tolist() == [1.75]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda o: CosineDecay(o, total=4, warmup=4), r"total \(4\) must exceed warmup \(4\)"),
        (lambda o: CosineDecay(o, total=4, warmup=-1), "warmup must be a non-negative integer"),
        (lambda o: CosineDecay(o, total=4.0), "total must be a non-negative integer, got 4.0"),
        (lambda o: CosineDecay(o, total=4, min_lr=0.2), r"min_lr must lie in \[0, base_lr"),
        (lambda o: StepDecay(o, every=0), "every must be at least 1, got 0"),
        (lambda o: StepDecay(o, every=2, factor=0.0), r"factor must lie in \(0, 1\], got 0.0"),
        (lambda o: StepDecay(o, every=2, factor=1.5), r"factor must lie in \(0, 1\], got 1.5"),
    ],
)
def test_constructors_check_their_settings(make, message):
    opt = optimizer(0.1)
    with pytest.raises(ValueError, match=message):
        make(opt)
    assert opt.lr == 0.1  # refused before changing anything


def test_a_schedule_needs_an_optimiser():
    with pytest.raises(TypeError, match="expected an optimiser"):
        Constant(0.1)


# --- saving and loading -----------------------------------------------------------------

MAKERS = {
    "cosine": lambda o: CosineDecay(o, total=12, warmup=3, min_lr=1e-4),
    "step": lambda o: StepDecay(o, every=4, factor=0.3, warmup=2),
    "constant": lambda o: Constant(o, warmup=5),
}


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_state_dict_round_trips_bit_for_bit_through_npz(kind, tmp_path):
    schedule = MAKERS[kind](optimizer(0.1))
    for _ in range(5):
        schedule.step()
    state = schedule.state_dict()
    assert all(type(value) in (int, float) for value in state.values())
    np.savez(tmp_path / "schedule.npz", **state)

    other_opt = optimizer(0.7)  # another base lr: the loaded one replaces it
    other = MAKERS[kind](other_opt)
    with np.load(tmp_path / "schedule.npz") as saved:
        other.load_state_dict(dict(saved))
    assert other.state_dict() == state
    assert other_opt.lr == schedule.optimizer.lr == schedule.at(5)
    for _ in range(10):  # and they go on together
        schedule.step()
        other.step()
        assert other_opt.lr == schedule.optimizer.lr


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("count", None, r"missing keys \['count'\]"),
        ("period", 3, r"unexpected keys \['period'\]"),
        ("count", -1, "'count' must be a non-negative integer, got -1"),
        ("count", 2.5, "'count' must be a non-negative integer"),
        ("min_lr", np.nan, "'min_lr' must be a finite number"),
        ("warmup", 12, r"total \(12\) must exceed warmup \(12\)"),
        ("base_lr", 0.0, "base_lr .* must be positive"),
        ("min_lr", 1.0, r"min_lr must lie in \[0, base_lr"),
    ],
)
def test_load_errors_name_the_key_and_change_nothing(key, value, message):
    opt = optimizer(0.1)
    schedule = MAKERS["cosine"](opt)
    schedule.step()
    before, lr = schedule.state_dict(), opt.lr
    state = dict(before, count=7)
    if value is None:
        del state[key]
    else:
        state[key] = value
    with pytest.raises(ValueError, match=message):
        schedule.load_state_dict(state)
    assert schedule.state_dict() == before and opt.lr == lr


def test_step_inside_a_compiled_step_is_refused():
    p = nn.Parameter(np.ones(2))
    opt = Adam([p], lr=0.1)
    schedule = Constant(opt)

    def step(x):
        opt.zero_grad()
        (p * x).sum().backward()
        opt.step()
        schedule.step()  # would run once, when traced

    with pytest.raises(tg.TraceError, match=r"Constant.step\(\) inside a compiled step"):
        tg.compile(step)(tg.Tensor(np.ones(2)))
