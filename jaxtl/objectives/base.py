"""The objective interface: what a pretraining or auxiliary objective adds to a run.

The switch loss (:func:`jaxtl.objectives.supervised.switch_loss`) runs the encoder once per
batch and picks one ``lax.switch`` branch by ``batch["task_id"]``: labelled tasks get their
head's supervised loss; the one stream an objective owns gets :meth:`Objective.branch`. An
objective therefore says four things, and the loop needs nothing else:

- the data stream it needs (:meth:`stream`: packed LM blocks, or one unlabelled line per row);
- the heads it adds (:meth:`heads` before the model is built — a tied LM head —, :meth:`extend`
  after — CVT's auxiliary heads);
- its loss on a batch of its stream (:meth:`branch`);
- which heads its batches update (:meth:`owners`).

New objectives (ELMo's bidirectional LM, MASS, UNILM …) implement this and plug into the same
step; see :mod:`jaxtl.objectives.consistency` for a small one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from jaxtl.data.prepare import TaskData

Branch = Callable[[tuple[jax.Array, jax.Array]], tuple[jax.Array, jax.Array]]


class Objective:
    """Base class; subclasses set ``name`` and override what they need."""

    name = "objective"
    needs_lm_head = False  # the encoder is loaded with its tied LM head (jaxtl.models.lm)
    # The switch traces every branch on every stage's batches: an objective whose branch reads
    # packed task batches (jaxtl.data.packing) lets the tasks pack.
    packs = False
    data: TaskData  # set by stream()

    def setup(
        self,
        encoder: nnx.Module,
        tokenizer: Any,
        targets: Sequence[TaskData],
        config: ml_collections.ConfigDict,
    ) -> None:
        """Check settings against the encoder and targets; precompute what the loss needs."""
        self.targets = list(targets)

    def stream(
        self, config: ml_collections.ConfigDict, tokenizer: Any, *, index: int, seed: int
    ) -> TaskData:
        raise NotImplementedError

    def heads(self, lm_head: nnx.Module | None) -> dict[str, nnx.Module]:
        return {}

    def extend(self, model: nnx.Module, config: ml_collections.ConfigDict) -> None:
        """Add heads that depend on the built model (default: none)."""

    def branch(
        self, model: nnx.Module, batch: dict, out: Any, rngs: nnx.Rngs, *,
        head_dropout_key: jax.Array, train_mode: bool,
    ) -> Branch:  # fmt: skip
        """The stream's ``lax.switch`` branch: ``f((feats, last_hidden)) -> (loss_sum, den)``.
        Keys are drawn from ``rngs`` here, outside the switch (nnx.Rngs cannot advance inside a
        branch)."""
        raise NotImplementedError

    def owners(self, params: Any) -> dict[str, set[int]]:
        """{head key: task indices whose batches update it}, beyond each task's own head."""
        return {self.data.key: {self.data.index}}


def kl(p_logits: jax.Array, q_logits: jax.Array) -> jax.Array:
    """KL(p || q) over the last axis, p the (stop-gradient) target prediction."""
    logp = jax.nn.log_softmax(p_logits.astype(jnp.float32), -1)
    logq = jax.nn.log_softmax(q_logits.astype(jnp.float32), -1)
    return jnp.sum(jnp.exp(logp) * (logp - logq), -1)


def bernoulli_kl(p_logits: jax.Array, q_logits: jax.Array) -> jax.Array:
    """Sum over the last axis of KL(p_c || q_c), each class a Bernoulli with logit given."""
    p, q = p_logits.astype(jnp.float32), q_logits.astype(jnp.float32)
    pp = jax.nn.sigmoid(p)
    # log p(yes) - log q(yes) and log p(no) - log q(no), in the stable log-sigmoid form
    yes = jax.nn.log_sigmoid(p) - jax.nn.log_sigmoid(q)
    no = jax.nn.log_sigmoid(-p) - jax.nn.log_sigmoid(-q)
    return jnp.sum(pp * yes + (1.0 - pp) * no, -1)


def divergence(kind: str, p: jax.Array, q: jax.Array) -> jax.Array:
    """How far a head's prediction ``q`` is from the target ``p``: KL over classes (per row or
    per token), a squared difference for regression, and for multilabel the KL of each class's
    own yes/no distribution, summed over classes."""
    if kind == "regression":
        return (p[..., 0] - q[..., 0]).astype(jnp.float32) ** 2
    if kind == "multilabel":
        return bernoulli_kl(p, q)
    if kind in ("classification", "tagging"):
        return kl(p, q)
    raise ValueError(f"no divergence for task kind {kind!r}")


def real_token_mask(batch: dict, special_ids: np.ndarray) -> jax.Array:
    """bool[B,T]: real (not padding), non-special tokens of real rows."""
    specials = jnp.asarray(special_ids, jnp.int32)
    return (
        (batch["attention_mask"] > 0)
        & ~jnp.isin(batch["input_ids"], specials)
        & (batch["example_weight"][:, None] > 0)
    )
