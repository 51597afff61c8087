"""Learning-rate schedules against their formulas (ULMFiT STLR, warm-up, linear, cosine)."""

from __future__ import annotations

import math

import numpy as np
import optax
import pytest

from jaxtl.partition import make_schedule
from jaxtl.partition.schedules import warmup_steps

RTOL = 1e-6  # float32 evaluation of closed forms


def stlr_reference(t: int, T: int, lr: float, cut_frac: float, ratio: float) -> float:
    """Howard & Ruder (2018), eq. 3, literally."""
    cut = math.floor(T * cut_frac)
    p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / cut_frac - 1))
    return lr * (1 + p * (ratio - 1)) / ratio


@pytest.mark.parametrize("T,cut_frac,ratio", [(1000, 0.1, 32.0), (250, 0.2, 10.0)])
def test_stlr_matches_ulmfit(T, cut_frac, ratio):
    lr = 0.01
    sched = make_schedule("stlr", lr=lr, total_steps=T, stlr_cut_frac=cut_frac, stlr_ratio=ratio)
    cut = math.floor(T * cut_frac)
    assert float(sched(0)) == pytest.approx(lr / ratio, rel=RTOL)  # starts at lr/ratio
    assert float(sched(cut)) == pytest.approx(lr, rel=RTOL)  # peak at cut
    assert float(sched(T)) == pytest.approx(lr / ratio, rel=RTOL)  # back down at T
    for t in (0, 1, cut // 2, cut - 1, cut, cut + 1, (cut + T) // 2, T - 1, T):
        assert float(sched(t)) == pytest.approx(stlr_reference(t, T, lr, cut_frac, ratio), rel=RTOL)


def test_warmup_is_fraction_or_steps():
    assert warmup_steps(0.1, 200) == 20
    assert warmup_steps(30, 200) == 30
    assert warmup_steps(0, 200) == 0
    with pytest.raises(ValueError, match="exceeds"):
        warmup_steps(300, 200)


@pytest.mark.parametrize("name", ["constant", "linear", "cosine"])
def test_warmup_values(name):
    sched = make_schedule(name, lr=2.0, total_steps=100, warmup=0.1)
    for t in range(10):
        assert float(sched(t)) == pytest.approx(2.0 * t / 10, rel=RTOL, abs=1e-12)
    assert float(sched(10)) == pytest.approx(2.0, rel=RTOL)


def test_linear_and_cosine_decay_match_optax():
    T, W, lr = 100, 10, 2.0
    lin = make_schedule("linear", lr=lr, total_steps=T, warmup=W)
    cos = make_schedule("cosine", lr=lr, total_steps=T, warmup=W)
    ref_lin = optax.join_schedules(
        [optax.linear_schedule(0.0, lr, W), optax.linear_schedule(lr, 0.0, T - W)], [W]
    )
    ref_cos = optax.warmup_cosine_decay_schedule(0.0, lr, W, T, end_value=0.0)
    ts = np.arange(0, T + 5)
    np.testing.assert_allclose([lin(t) for t in ts], [ref_lin(t) for t in ts], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([cos(t) for t in ts], [ref_cos(t) for t in ts], rtol=1e-5, atol=1e-6)
    assert float(lin(T)) == 0.0 and float(cos(T)) == pytest.approx(0.0, abs=1e-6)
    assert float(lin(55)) == pytest.approx(lr * (T - 55) / (T - W), rel=RTOL)
    assert float(cos(55)) == pytest.approx(lr * 0.5 * (1 + math.cos(math.pi * 0.5)), rel=RTOL)


def test_constant_and_errors():
    sched = make_schedule("constant", lr=0.3, total_steps=10)
    assert [float(sched(t)) for t in (0, 5, 10)] == pytest.approx([0.3] * 3)
    with pytest.raises(ValueError, match="allowed"):
        make_schedule("triangle", lr=1.0, total_steps=10)
    with pytest.raises(ValueError, match="stlr_cut_frac"):
        make_schedule("stlr", lr=1.0, total_steps=10, stlr_cut_frac=1.5)
