"""Which task supplies the next batch: multi-task sampling schemes, stateless by step.

``Mixture(sizes, scheme=...)`` gives ``probabilities(step)`` and ``task_for_step(step)``; the
draw for step s depends only on (seed, s), so a resumed run continues the exact sequence with no
sampler state to save.

Schemes (n_i = training examples of task i):

- ``proportional``: p_i ∝ n_i (examples drawn as if from one concatenated dataset).
- ``temperature``: p_i ∝ n_i^(1/T) (T5's temperature-scaled mixing; T=1 is proportional, large T
  tends to uniform).
- ``uniform``: p_i = 1/K.
- ``round_robin``: task ``step % K`` (deterministic, no randomness).
- ``annealed``: p_i ∝ n_i^alpha with alpha = 1 - 0.8 (e - 1) / (E - 1) (Stickland & Murray 2019,
  "BERT and PALs"): proportional in the first epoch e = 1, flatter towards alpha = 0.2 at E. With
  ``epochs=E`` the epoch of a step is ``1 + step * E // total_steps``; without, alpha anneals
  continuously with ``e - 1 = (E - 1) * step / (total_steps - 1)``.

>>> m = Mixture([1000, 100], scheme="temperature", temperature=2.0, seed=0)
>>> [round(float(p), 3) for p in m.probabilities(0)]
[0.76, 0.24]

For self-supervised joint training (CVT), :func:`stream_for_step` alternates labelled and
unlabelled batches by a fixed pattern, e.g. ``ratio_pattern(labelled=1, unlabelled=2)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SCHEMES = ("proportional", "temperature", "uniform", "round_robin", "annealed")


class Mixture:
    def __init__(
        self,
        sizes: Sequence[int],
        *,
        scheme: str = "proportional",
        temperature: float = 2.0,
        seed: int = 0,
        total_steps: int | None = None,
        epochs: int | None = None,
    ):
        if scheme not in SCHEMES:
            raise ValueError(f"mixture scheme must be one of {SCHEMES}, got {scheme!r}")
        self.sizes = np.asarray(sizes, np.float64)
        if self.sizes.ndim != 1 or len(self.sizes) == 0 or (self.sizes <= 0).any():
            raise ValueError(f"mixture sizes must be positive counts, got {list(sizes)}")
        if scheme == "temperature" and temperature <= 0:
            raise ValueError(f"mixture temperature must be > 0, got {temperature}")
        if scheme == "annealed" and not total_steps:
            raise ValueError("the annealed mixture needs total_steps")
        self.scheme = scheme
        self.temperature = float(temperature)
        self.seed = int(seed)
        self.total_steps = total_steps
        self.epochs = epochs

    def __len__(self) -> int:
        return len(self.sizes)

    def alpha(self, step: int) -> float:
        """The exponent on the sizes at ``step`` (1 = proportional, 0 = uniform)."""
        if self.scheme == "proportional":
            return 1.0
        if self.scheme == "temperature":
            return 1.0 / self.temperature
        if self.scheme in ("uniform", "round_robin"):
            return 0.0
        assert self.total_steps is not None
        step = min(max(step, 0), self.total_steps - 1)
        if self.epochs and self.epochs > 1:
            e = 1 + step * self.epochs // self.total_steps
            return 1.0 - 0.8 * (e - 1) / (self.epochs - 1)
        return 1.0 - 0.8 * step / max(self.total_steps - 1, 1)

    def probabilities(self, step: int = 0) -> np.ndarray:
        weights = self.sizes ** self.alpha(step)
        return weights / weights.sum()

    def task_for_step(self, step: int) -> int:
        if self.scheme == "round_robin":
            return int(step % len(self.sizes))
        rng = np.random.default_rng([self.seed, int(step)])
        # Inverse CDF on one uniform draw: cheap and the same on every platform.
        cdf = np.cumsum(self.probabilities(step))
        return min(int(np.searchsorted(cdf, rng.random(), side="right")), len(cdf) - 1)


def ratio_pattern(**counts: int) -> tuple[str, ...]:
    """``ratio_pattern(labelled=1, unlabelled=2)`` -> ``("unlabelled", "labelled", "unlabelled")``:
    one cycle with each stream's count of steps, spread as evenly as the counts allow."""
    if not counts or any(c < 0 for c in counts.values()) or sum(counts.values()) == 0:
        raise ValueError(f"ratio_pattern needs non-negative counts, some positive: {counts}")
    total = sum(counts.values())
    # Position of the k-th item of a stream with c items: (k + 0.5) / c; merge by position.
    slots = sorted(
        ((k + 0.5) / c, i, name) for i, (name, c) in enumerate(counts.items()) for k in range(c)
    )
    assert len(slots) == total
    return tuple(name for _, _, name in slots)


def stream_for_step(step: int, pattern: Sequence[str] = ("labelled", "unlabelled")) -> str:
    """Which stream feeds step ``step`` (the pattern repeats)."""
    return pattern[int(step) % len(pattern)]
