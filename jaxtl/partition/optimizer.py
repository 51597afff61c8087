"""A Plan compiled to one optax transformation built on ``optax.partition``.

Chain, in order (each piece only when asked for):

1. ``partition({frozen: set_to_zero, trainable: identity})`` -- only with ``clip_norm``: the
   frozen gradients become literal zeros *before* the global norm is taken, so the norm covers
   trainable parameters only and XLA still drops the frozen weight-gradient work.
2. ``clip_by_global_norm(clip_norm)`` (this module's: it takes the norm from the train step
   when the step has it, see the function).
3. ``l2sp`` (jaxtl.partition.l2sp): adds ``alpha (w - w0)`` / ``beta w`` to the gradients.
4. ``partition({label: optimizer})``: one optimizer per (optimizer, lr_scale, weight decay)
   label; the label ``frozen`` maps to ``optax.set_to_zero()``, so inside a jitted step frozen
   parameters get no optimizer state at all (``optax.masked`` leaves ``MaskedNode`` in their place)
   and their updates are constants. Each trainable optimizer runs with learning rate
   ``lr_scale`` (decoupled weight decay is therefore scaled by ``lr_scale * schedule`` as usual).
5. ``scale_by_global_schedule(schedule, start_step)``: multiplies every update by the stage's
   scheduled LR at the *global* step. One counter for the whole stage, outside the per-label
   states, so that groups created by a phase change (whose Adam counts start at 0) still follow
   the stage schedule; its count starts at the phase's ``start_step``.

Optimizers by name (``OPTIMIZERS``): ``adamw`` (default; decoupled weight decay), ``adam`` (no
weight decay), ``sgd`` (plain SGD; decay added to the gradient, which for SGD is the same thing),
``momentum`` (SGD with momentum ``b1``), ``adafactor``, ``lion``, ``lamb``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxtl.partition.l2sp import l2sp
from jaxtl.partition.rules import Plan

OPTIMIZERS = ("adamw", "adam", "sgd", "momentum", "adafactor", "lion", "lamb")


def make_optimizer(
    name: str,
    *,
    lr: float,
    weight_decay: float = 0.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    where: str = "optim.optimizer",
) -> optax.GradientTransformation:
    """The optimizer ``name`` with a constant ``lr`` (schedules are applied outside)."""
    if name == "adamw":
        return optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
    if name == "adam":
        if weight_decay:
            raise ValueError(f"{where}: 'adam' has no weight decay (got {weight_decay}); use adamw")
        return optax.adam(lr, b1=b1, b2=b2, eps=eps)
    if name in ("sgd", "momentum"):
        sgd = optax.sgd(lr, momentum=b1 if name == "momentum" else None)
        return optax.chain(optax.add_decayed_weights(weight_decay), sgd) if weight_decay else sgd
    if name == "adafactor":
        return optax.adafactor(lr, weight_decay_rate=weight_decay or None)
    if name == "lion":
        return optax.lion(lr, b1=b1, b2=b2, weight_decay=weight_decay)
    if name == "lamb":
        return optax.lamb(lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
    raise ValueError(f"{where}: unknown optimizer {name!r}; allowed: {list(OPTIMIZERS)}")


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformationExtraArgs:
    """Scale the updates by ``max_norm / norm`` when their global norm exceeds ``max_norm``, as
    ``optax.clip_by_global_norm`` does, with two differences that matter for speed on CPU, where
    a parameter-sized pass costs as much as a small batch's layer:

    - ``update(..., global_norm=n)`` uses ``n`` instead of taking the norm again. The train step
      passes the norm it takes for its log and finite check (``jaxtl.step``), so the gradients
      are read once for it, not twice.
    - Clipping multiplies by one scalar factor (1 when under the limit, so the updates pass
      unchanged), which XLA folds into each consumer of the clipped gradient; optax's per-element
      ``select(t, t / norm * max_norm)`` was written out as one more parameter-sized array.
    """

    def update_fn(updates, state, params=None, *, global_norm=None, **extra_args):
        del params, extra_args
        norm = optax.global_norm(updates) if global_norm is None else global_norm
        factor = jnp.where(norm < max_norm, 1.0, max_norm / norm)
        return jax.tree.map(lambda t: t * factor.astype(t.dtype), updates), state

    return optax.GradientTransformationExtraArgs(optax.init_empty_state, update_fn)


class GlobalScheduleState(NamedTuple):
    step: Any  # int32 scalar: the stage's global step


def scale_by_global_schedule(
    schedule: Callable[[Any], Any], start_step: int = 0
) -> optax.GradientTransformation:
    """Multiply updates by ``schedule(step)``; ``step`` starts at ``start_step``."""

    def init_fn(params):
        del params
        return GlobalScheduleState(step=jnp.asarray(start_step, jnp.int32))

    def update_fn(updates, state, params=None):
        del params
        lr = schedule(state.step)
        updates = jax.tree.map(lambda u: (u * lr).astype(u.dtype), updates)
        return updates, GlobalScheduleState(step=optax.safe_int32_increment(state.step))

    return optax.GradientTransformation(init_fn, update_fn)


def build_tx(
    plan: Plan,
    *,
    schedule: Callable[[Any], Any],
    start_step: int = 0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    clip_norm: float | None = None,
    l2sp_alpha: float = 0.0,
    l2sp_beta: float = 0.0,
    l2sp_anchored: Callable[[str], bool] | None = None,
) -> optax.GradientTransformation:
    """Compile ``plan`` (see module docstring). ``schedule(global_step)`` is the stage LR."""
    txs: dict[str, optax.GradientTransformation] = {}
    for e in plan.entries.values():
        if e.label in txs:
            continue
        if e.frozen:
            txs[e.label] = optax.set_to_zero()
        else:
            where = f"rule [{e.rule_index}] {e.rule.label!r} optimizer"
            txs[e.label] = make_optimizer(
                e.optimizer,
                lr=e.lr_scale,
                weight_decay=e.weight_decay,
                b1=b1,
                b2=b2,
                eps=eps,
                where=where,
            )

    parts: list[optax.GradientTransformation] = []
    if clip_norm:
        if clip_norm < 0:
            raise ValueError(f"optim.clip_norm must be > 0 (or 0/None for off), got {clip_norm}")
        gate = {"frozen": optax.set_to_zero(), "trainable": optax.identity()}
        parts.append(
            optax.partition(
                gate, lambda t: plan.map(lambda e: "frozen" if e.frozen else "trainable", t)
            )
        )
        parts.append(clip_by_global_norm(clip_norm))
    if l2sp_alpha or l2sp_beta:
        anchored = l2sp_anchored or (lambda p: p.startswith("encoder/"))
        parts.append(l2sp(l2sp_alpha, l2sp_beta, anchored=anchored))
    parts.append(optax.partition(txs, plan.labels))
    parts.append(scale_by_global_schedule(schedule, start_step))
    return optax.chain(*parts)
