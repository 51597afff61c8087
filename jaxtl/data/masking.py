"""Masked-LM batches: BERT's 15% / 80-10-10 masking applied per batch, reproducibly.

:class:`Masking` holds the settings for :func:`jaxtl.data.tokenize.mask_tokens`;
:class:`MaskedBatches` wraps a training iterator and masks each batch afresh with a numpy
Generator seeded by ``(seed, epoch, position)`` of the wrapped iterator, so a restored iterator
reproduces the exact masks with no RNG state to keep. Dev batches are masked once with a fixed
seed (:func:`jaxtl.data.prepare.corpus_blocks`), so dev perplexity is comparable across
evaluations.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxtl.data import tokenize
from jaxtl.data.batching import TrainBatches


@dataclasses.dataclass(frozen=True)
class Masking:
    """BERT masking settings for :func:`jaxtl.data.tokenize.mask_tokens`."""

    mask_id: int
    vocab_size: int
    special_ids: np.ndarray
    prob: float = 0.15
    whole_word: bool = False
    continuation: np.ndarray | None = None

    @classmethod
    def for_tokenizer(
        cls, tokenizer: Any, vocab_size: int, *, prob: float = 0.15, whole_word: bool = False
    ) -> Masking:
        if tokenizer.mask_token_id is None:
            raise ValueError("MLM needs a tokenizer with a mask token ([MASK] / <mask>)")
        if not 0.0 < prob < 1.0:
            raise ValueError(f"MLM masking probability must be in (0, 1), got {prob}")
        cont = tokenize.continuation_table(tokenizer) if whole_word else None
        # Random replacements must be ids the embedding table has.
        vocab = min(int(vocab_size), len(tokenizer))
        return cls(
            int(tokenizer.mask_token_id), vocab, tokenize.special_ids(tokenizer), float(prob),
            bool(whole_word), cont,
        )  # fmt: skip

    def apply(self, batch: dict[str, np.ndarray], rng: np.random.Generator):
        return tokenize.mask_tokens(
            batch,
            rng,
            mask_id=self.mask_id,
            vocab_size=self.vocab_size,
            special_ids=self.special_ids,
            prob=self.prob,
            whole_word=self.whole_word,
            continuation=self.continuation,
        )


class MaskedBatches:
    """An MLM training iterator: the wrapped iterator's batches, freshly masked each time.

    The masks of a batch depend only on ``(seed, epoch, position)`` of the wrapped iterator at
    the moment it is drawn, and that position is what :meth:`state` saves: after
    :meth:`restore` the same batches come back with the same masks.
    """

    def __init__(self, inner: TrainBatches, masking: Masking, seed: int):
        self.inner = inner
        self.masking = masking
        self.seed = int(seed)

    def __iter__(self) -> MaskedBatches:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        where = [self.seed, int(self.inner.epoch), int(self.inner.position)]
        batch = next(self.inner)
        return self.masking.apply(batch, np.random.default_rng(where))

    def state(self) -> dict[str, Any]:
        return self.inner.state()

    def restore(self, state: dict[str, Any]) -> None:
        self.inner.restore(state)
