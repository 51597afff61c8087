"""L2-SP (Li, Grandvalet & Davoine 2018): keep pretrained weights near where they started.

Penalty: ``alpha/2 * ||w - w0||^2`` over the pretrained weights (``w0`` = their values when
training on the target began) plus, optionally, ``beta/2 * ||w||^2`` over the new weights.

Built as an optax transformation that adds the penalty's gradient, ``alpha * (w - w0)`` and
``beta * w``, to the incoming gradients, rather than as a loss term, because:

- the anchor ``w0`` lives in the optimizer state: it is created by ``tx.init(params)``, sharded,
  checkpointed and restored with the rest of the state, and ``carry_over`` passes it from phase
  to phase, so neither the loss function nor the train step has to know L2-SP exists;
- the trainer only calls ``phases_from_config``; a loss term would need the anchor threaded
  through every regime's loss.

The cost: the penalty value is not part of the logged loss (``l2sp_penalty`` computes it for
logging). Placed before the optimizer, the gradient goes through Adam's normalisation like any
L2 term (the paper used SGD, where the two forms coincide). Frozen parameters also receive the
term, but their updates are zeroed by the partition, so it costs nothing.

Example::

    >>> tx = optax.chain(l2sp(alpha=0.01, anchored=lambda p: p.startswith("encoder/")),
    ...                  optax.sgd(0.1))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxtl import paths


class L2SPState(NamedTuple):
    anchor: Any  # params tree; optax.MaskedNode() where a param has no anchor


def _is_pretrained(path: str) -> bool:
    return path.startswith("encoder/")


def l2sp(
    alpha: float,
    beta: float = 0.0,
    *,
    anchored: Callable[[str], bool] = _is_pretrained,
    new: Callable[[str], bool] = lambda p: not _is_pretrained(p),
) -> optax.GradientTransformation:
    """Adds ``alpha * (w - w0)`` for params with ``anchored(path)`` and ``beta * w`` for ``new``.

    ``anchored`` defaults to "pretrained" (under ``encoder/``); pass a narrower predicate to keep
    no anchor for weights that never train. Requires ``params`` in ``update``.
    """
    if alpha < 0 or beta < 0:
        raise ValueError(f"l2sp: alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")

    def init_fn(params):
        # A copy, so that donating the params buffers in the train step leaves the anchor intact.
        return L2SPState(
            anchor=paths.map_with_path(
                lambda p, w: jnp.copy(w) if anchored(p) else optax.MaskedNode(), params
            )
        )

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("l2sp needs params: call tx.update(grads, state, params)")

        def add(kp, g, w, w0):
            if isinstance(w0, optax.MaskedNode):
                if beta == 0 or not new(paths.path_str(kp)):
                    return g
                return g + (beta * w).astype(g.dtype)
            return g + (alpha * (w - w0)).astype(g.dtype)

        return jax.tree_util.tree_map_with_path(add, updates, params, state.anchor), state

    return optax.GradientTransformation(init_fn, update_fn)


def l2sp_penalty(
    params: Any,
    anchor: Any,
    alpha: float,
    beta: float = 0.0,
    *,
    new: Callable[[str], bool] = lambda p: not _is_pretrained(p),
) -> jax.Array:
    """The penalty value ``alpha/2 ||w - w0||^2 + beta/2 ||w_new||^2`` (for logging)."""

    def term(kp, w, w0):
        if isinstance(w0, optax.MaskedNode):
            if not new(paths.path_str(kp)):
                return jnp.float32(0.0)
            return 0.5 * beta * jnp.sum(jnp.square(w.astype(jnp.float32)))
        return 0.5 * alpha * jnp.sum(jnp.square((w - w0).astype(jnp.float32)))

    terms = jax.tree_util.tree_map_with_path(term, params, anchor)
    return sum(jax.tree.leaves(terms), jnp.float32(0.0))
