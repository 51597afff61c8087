"""Consistency training (UDA, Xie et al. 2019, with token noise instead of back-translation).

On unlabelled batches: ``weight * divergence(p(y|x), p(y|noised x))`` through every target
task's own head, the clean prediction a stop-gradient target. The noise replaces each real
non-special token with probability ``noise`` by [MASK] or a random token (even odds). Per
sentence for classification, per real token for tagging, a squared difference for regression.
The clean prediction reuses the step's forward pass (dropout on in training, as in UDA); the
noised one is a second encoder pass, run on unlabelled steps only.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from jaxtl.data import tokenize
from jaxtl.data.prepare import TaskData, corpus_lines
from jaxtl.objectives.base import Objective, divergence, real_token_mask

UNLABELLED_KEY = "unlabelled"  # task key of the stream (it has no head of its own)


def noise_tokens(
    key: jax.Array,
    batch: dict,
    rate: float,
    *,
    special_ids: np.ndarray,
    vocab_size: int,
    mask_id: int | None,
) -> jax.Array:
    """In-graph input noise: each real, non-special token is chosen with probability ``rate``; a
    chosen token becomes [MASK] or a random non-special token (even odds; always random without a
    mask token). ``rate`` 0 returns the input ids unchanged."""
    ids = batch["input_ids"]
    if rate <= 0.0:
        return ids
    k_choose, k_kind, k_tok = jax.random.split(key, 3)
    specials = jnp.asarray(special_ids, jnp.int32)
    maskable = (batch["attention_mask"] > 0) & ~jnp.isin(ids, specials)
    chosen = maskable & (jax.random.uniform(k_choose, ids.shape) < rate)
    normal = jnp.asarray(np.setdiff1d(np.arange(vocab_size, dtype=np.int32), special_ids))
    random_ids = normal[jax.random.randint(k_tok, ids.shape, 0, normal.shape[0])]
    if mask_id is None:
        replacement = random_ids
    else:
        use_mask = jax.random.uniform(k_kind, ids.shape) < 0.5
        replacement = jnp.where(use_mask, jnp.int32(mask_id), random_ids)
    return jnp.where(chosen, replacement, ids)


class Consistency(Objective):
    name = "consistency"

    def __init__(self, corpus: str, *, noise: float = 0.15, weight: float = 1.0):
        if not 0.0 <= noise < 1.0:
            raise ValueError(f"unlabelled.noise must be in [0, 1), got {noise}")
        self.corpus, self.noise, self.weight = corpus, float(noise), float(weight)

    def setup(self, encoder, tokenizer, targets, config: ml_collections.ConfigDict) -> None:
        super().setup(encoder, tokenizer, targets, config)
        for td in targets:
            if td.task.kind not in ("classification", "multilabel", "tagging", "regression"):
                raise ValueError(f"consistency: no divergence for {td.task.name} ({td.task.kind})")
        self.special_ids = tokenize.special_ids(tokenizer)
        self.vocab_size = min(int(encoder.tied_embedding().shape[0]), len(tokenizer))
        self.mask_id = tokenizer.mask_token_id

    def stream(self, config, tokenizer: Any, *, index: int, seed: int) -> TaskData:
        self.data = corpus_lines(
            config, tokenizer, self.corpus, index=index, key=UNLABELLED_KEY, seed=seed
        )
        return self.data

    def owners(self, params: Any) -> dict[str, set[int]]:
        # The target heads are what the consistency loss trains.
        return {td.key: {td.index, self.data.index} for td in self.targets}

    def branch(self, model, batch, out, rngs, *, head_dropout_key, train_mode):
        """Loss = weight * sum over target heads of the mean divergence (per real row for
        sentence heads, per real non-special token for taggers), times the number of real rows
        (the denominator the step divides by)."""
        noise_key, dropout_key = rngs.dropout(), rngs.dropout()

        def f(operands):
            feats, _ = operands
            clean = jax.lax.stop_gradient(feats)
            noised_ids = noise_tokens(
                noise_key, batch, self.noise, special_ids=self.special_ids,
                vocab_size=self.vocab_size, mask_id=self.mask_id,
            )  # fmt: skip
            _, noised = model.features(
                noised_ids,
                batch["attention_mask"],
                batch["token_type_ids"],
                deterministic=not train_mode,
                rngs=nnx.Rngs(dropout=dropout_key),
            )
            w = batch["example_weight"]
            rows = w.sum()
            tokens = real_token_mask(batch, self.special_ids).astype(jnp.float32)
            total = jnp.zeros((), jnp.float32)
            for td in self.targets:
                head = model.heads[td.key]
                # The target: the clean prediction without head dropout, never differentiated.
                p = jax.lax.stop_gradient(head(clean, batch["attention_mask"], deterministic=True))
                q = head(
                    noised,
                    batch["attention_mask"],
                    deterministic=not train_mode,
                    rngs=nnx.Rngs(dropout=dropout_key),
                )
                per = divergence(td.task.kind, p, q)
                if td.task.kind == "tagging":
                    total += (per * tokens).sum() / jnp.maximum(tokens.sum(), 1.0)
                else:
                    total += (per * w).sum() / jnp.maximum(rows, 1.0)
            return self.weight * total * rows, rows

        return f
