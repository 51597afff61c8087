"""Mixture sampling: probabilities per scheme, empirical frequencies, resumability."""

import numpy as np
import pytest

from jaxtl.data.mixture import Mixture, ratio_pattern, stream_for_step

SIZES = [4000, 1000, 250]
N = 5000
# Tolerance: 4 binomial standard deviations of a frequency over N draws (<= 0.5/sqrt(N) each).
TOL = 4 * 0.5 / np.sqrt(N)


def freqs(m, start=0):
    draws = [m.task_for_step(s) for s in range(start, start + N)]
    return np.bincount(draws, minlength=len(SIZES)) / N


@pytest.mark.parametrize(
    "scheme,expected",
    [
        ("proportional", np.array(SIZES) / sum(SIZES)),
        ("temperature", np.sqrt(SIZES) / np.sqrt(SIZES).sum()),  # T = 2
        ("uniform", np.full(3, 1 / 3)),
        ("round_robin", np.full(3, 1 / 3)),
    ],
)
def test_frequencies_match_probabilities(scheme, expected):
    m = Mixture(SIZES, scheme=scheme, temperature=2.0, seed=1)
    np.testing.assert_allclose(m.probabilities(0), expected, atol=1e-12)
    np.testing.assert_allclose(freqs(m), expected, atol=TOL)


def test_annealed_follows_stickland_murray():
    m = Mixture(SIZES, scheme="annealed", seed=0, total_steps=3 * N, epochs=3)
    # epoch 1: alpha 1 (proportional); epoch 2: 0.6; epoch 3: 0.2
    assert (
        m.alpha(0) == 1.0
        and abs(m.alpha(N) - 0.6) < 1e-12
        and abs(m.alpha(3 * N - 1) - 0.2) < 1e-12
    )
    for epoch, alpha in enumerate([1.0, 0.6, 0.2]):
        expected = np.array(SIZES) ** alpha / (np.array(SIZES) ** alpha).sum()
        np.testing.assert_allclose(freqs(m, start=epoch * N), expected, atol=TOL)
    cont = Mixture(SIZES, scheme="annealed", total_steps=101)
    assert (
        cont.alpha(0) == 1.0
        and abs(cont.alpha(50) - 0.6) < 1e-12
        and abs(cont.alpha(100) - 0.2) < 1e-12
    )


def test_stateless_by_step_and_seeded():
    a = Mixture(SIZES, scheme="temperature", seed=7)
    b = Mixture(SIZES, scheme="temperature", seed=7)
    seq = [a.task_for_step(s) for s in range(200)]
    assert [b.task_for_step(s) for s in range(100, 200)] == seq[100:]  # resume mid-run
    assert [
        Mixture(SIZES, scheme="temperature", seed=8).task_for_step(s) for s in range(200)
    ] != seq


def test_bad_config():
    with pytest.raises(ValueError, match="scheme"):
        Mixture(SIZES, scheme="nope")
    with pytest.raises(ValueError, match="positive"):
        Mixture([10, 0])
    with pytest.raises(ValueError, match="total_steps"):
        Mixture(SIZES, scheme="annealed")


def test_labelled_unlabelled_interleaving():
    assert ratio_pattern(labelled=1, unlabelled=2) == ("unlabelled", "labelled", "unlabelled")
    pattern = ratio_pattern(labelled=2, unlabelled=3)
    streams = [stream_for_step(s, pattern) for s in range(100)]
    assert streams.count("labelled") == 40 and streams.count("unlabelled") == 60
    assert [stream_for_step(s) for s in range(4)] == ["labelled", "unlabelled"] * 2
