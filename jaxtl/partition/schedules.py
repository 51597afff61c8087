"""Learning-rate schedules: step -> learning rate, jit-friendly (step may be a traced int).

Every schedule spans the whole stage (``total_steps``), across all of its phases: ULMFiT applies
its slanted triangular schedule over the whole run while layers are thawed one by one, so a phase
change does not restart the schedule (``phases_from_config`` can restart it per phase on request).

- ``constant``: linear warm-up from 0, then ``lr``.
- ``linear``: linear warm-up from 0 to ``lr`` over W steps, then linear decay to 0 at step T.
- ``cosine``: linear warm-up, then half a cosine from ``lr`` down to 0 at step T.
- ``stlr``: ULMFiT's slanted triangular LR (Howard & Ruder 2018, eq. 3):
  ``cut = floor(T * cut_frac)``; ``p = t / cut`` if ``t < cut`` else
  ``1 - (t - cut) / (cut * (1 / cut_frac - 1))``; ``lr_t = lr * (1 + p * (ratio - 1)) / ratio``.
  Warm-up is built in (``cut``), so ``warmup`` does not apply. ``cut`` is at least 1 so that
  tiny runs stay defined, and ``p`` is clipped at 0 past ``T``.
- ``range_test``: the LR range test's exponential sweep (Smith 2017; fastai's ``lr_find``, the
  tool of ULMFiT's recipe): ``range_start * (lr / range_start) ** (t / (T - 1))``, from
  ``range_start`` at step 0 to ``lr`` at the last step (``jaxtl --lr_find``, :mod:`jaxtl.lr_find`).

Warm-up follows optax / HF: ``lr * t / W`` for ``t < W`` (so step 0 takes a zero step). ``warmup``
is a fraction of ``total_steps`` when < 1, else a number of steps.

Example::

    >>> sched = make_schedule("stlr", lr=0.01, total_steps=1000)
    >>> round(float(sched(100)), 6)  # the peak, at t = cut
    0.01
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax.numpy as jnp

Schedule = Callable[[object], object]
SCHEDULES = ("constant", "linear", "cosine", "stlr", "range_test")


def warmup_steps(warmup: float, total_steps: int) -> int:
    """``warmup`` < 1 is a fraction of ``total_steps``; >= 1 is a step count."""
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0 (fraction < 1 or steps >= 1), got {warmup}")
    w = int(math.floor(warmup * total_steps)) if warmup < 1 else int(warmup)
    if w > total_steps:
        raise ValueError(f"warmup of {w} steps exceeds total_steps={total_steps}")
    return w


def _warmup(lr: float, w: int, t):
    return lr * t / max(w, 1)


def constant(lr: float, *, total_steps: int, warmup: float = 0.0) -> Schedule:
    w = warmup_steps(warmup, total_steps)

    def fn(step):
        t = jnp.asarray(step, jnp.float32)
        return jnp.where(t < w, _warmup(lr, w, t), lr)

    return fn


def linear(lr: float, *, total_steps: int, warmup: float = 0.0) -> Schedule:
    w = warmup_steps(warmup, total_steps)
    decay = max(total_steps - w, 1)

    def fn(step):
        t = jnp.asarray(step, jnp.float32)
        down = lr * jnp.clip((total_steps - t) / decay, 0.0, 1.0)
        return jnp.where(t < w, _warmup(lr, w, t), down)

    return fn


def cosine(lr: float, *, total_steps: int, warmup: float = 0.0) -> Schedule:
    w = warmup_steps(warmup, total_steps)
    decay = max(total_steps - w, 1)

    def fn(step):
        t = jnp.asarray(step, jnp.float32)
        frac = jnp.clip((t - w) / decay, 0.0, 1.0)
        down = 0.5 * lr * (1.0 + jnp.cos(jnp.pi * frac))
        return jnp.where(t < w, _warmup(lr, w, t), down)

    return fn


def stlr(lr: float, *, total_steps: int, cut_frac: float = 0.1, ratio: float = 32.0) -> Schedule:
    if not 0 < cut_frac < 1:
        raise ValueError(f"stlr_cut_frac must be in (0, 1), got {cut_frac}")
    if ratio < 1:
        raise ValueError(f"stlr_ratio must be >= 1, got {ratio}")
    cut = max(int(math.floor(total_steps * cut_frac)), 1)
    decay = cut * (1.0 / cut_frac - 1.0)

    def fn(step):
        t = jnp.asarray(step, jnp.float32)
        p = jnp.where(t < cut, t / cut, 1.0 - (t - cut) / decay)
        p = jnp.clip(p, 0.0, 1.0)
        return lr * (1.0 + p * (ratio - 1.0)) / ratio

    return fn


def range_test(lr: float, *, total_steps: int, start: float = 1e-7) -> Schedule:
    if not 0 < start < lr:
        raise ValueError(f"range_start must be in (0, lr={lr}), got {start}")
    span = max(total_steps - 1, 1)

    def fn(step):
        t = jnp.clip(jnp.asarray(step, jnp.float32), 0.0, span)
        return start * (lr / start) ** (t / span)

    return fn


def make_schedule(
    name: str,
    *,
    lr: float,
    total_steps: int,
    warmup: float = 0.0,
    stlr_cut_frac: float = 0.1,
    stlr_ratio: float = 32.0,
    range_start: float = 1e-7,
) -> Schedule:
    """The schedule called ``name`` (one of SCHEDULES)."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if name == "constant":
        return constant(lr, total_steps=total_steps, warmup=warmup)
    if name == "linear":
        return linear(lr, total_steps=total_steps, warmup=warmup)
    if name == "cosine":
        return cosine(lr, total_steps=total_steps, warmup=warmup)
    if name == "stlr":
        return stlr(lr, total_steps=total_steps, cut_frac=stlr_cut_frac, ratio=stlr_ratio)
    if name == "range_test":
        return range_test(lr, total_steps=total_steps, start=range_start)
    raise ValueError(f"optim.schedule: unknown schedule {name!r}; allowed: {list(SCHEDULES)}")


def shifted(schedule: Schedule, offset: int) -> Schedule:
    """``schedule`` started ``offset`` steps later: ``shifted(s, k)(t) == s(t - k)``."""
    return lambda step: schedule(jnp.asarray(step) - offset)
