"""A measured workaround for a cost in ``jaxtl.step``: frozen weights' gradients are computed.

``jaxtl.step.make_train_step`` logs ``grad_norm = optax.global_norm(grads)`` over *all*
gradients, frozen ones included, and gates the update on it being finite. That output needs every
frozen parameter's gradient, so XLA cannot drop the frozen backward work that
``optax.partition(..., set_to_zero)`` would otherwise let it drop: the compiled step of a frozen
encoder counts the same FLOPs as full fine-tuning.

This module wraps a loss function so that frozen parameters enter it through
``jax.lax.stop_gradient``: their gradients become symbolic zeros, the norm of those is a
constant, and XLA removes the dead backward. The result is what the step would cost if it took
the norm over trainable parameters only (the change proposed for ``jaxtl/step.py``); the
benchmark reports it beside the unchanged step, never instead of it.
"""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

from jaxtl import paths


def stop_frozen(loss_fn: Any, trainable_mask: Any) -> Any:
    """``loss_fn`` with every parameter whose mask entry is False behind ``stop_gradient``."""
    flat_mask = paths.flatten(trainable_mask)

    def wrapped(model, batch, rngs, train_mode):
        state = nnx.state(model, nnx.Param)
        pure = nnx.to_pure_dict(state)
        pure = paths.map_with_path(
            lambda p, x: x if flat_mask.get(p, True) else jax.lax.stop_gradient(x), pure
        )
        nnx.replace_by_pure_dict(state, pure)
        nnx.update(model, state)
        return loss_fn(model, batch, rngs, train_mode)

    return wrapped
