"""MASS (Song et al. 2019): masked sequence-to-sequence pretraining of an encoder–decoder.

Each sentence of the corpus (one line, ``[CLS] x_1 … x_n [SEP]``) loses a contiguous span
``x_u … x_v`` of about ``span`` (50%) of its words: the encoder reads the sentence with the span
replaced by ``[MASK]``; the decoder (:class:`jaxtl.models.seq2seq.TransformerDecoder`, cross-
attending to the encoder's last hidden states) predicts the span, fed only the span's previous
tokens ``x_{u-1} … x_{v-1}`` at the span's positions ``u … v`` in the sentence — none of the
sentence outside the span, so it must draw on the encoder for context (the paper's point: the
encoder learns to understand the unmasked part, the decoder to rely on it). The loss is the
decoder's cross-entropy on ``x_u … x_v``; its exponential on the corpus' dev lines (spans drawn
once, with fixed seeds) is reported as the stream's ``perplexity``.

Masking is done on the host per batch (:class:`MassBatches`), seeded by the iterator position like
MLM masking, so a resumed run draws the same spans. The batch carries the decoder's inputs as
``decoder_input_ids`` / ``decoder_positions`` / ``decoder_labels`` ([B,T]; IGNORE past the span).
The paper's 80/10/10 replacement of the encoder's masked tokens is simplified to all-[MASK].

In the unsupervised-sequential regime (``pretrain.objective=mass``,
``configs/unsupervised_sequential_mass.py``) the pretraining stage trains encoder and decoder;
the adaptation stage fine-tunes the encoder with a fresh task head while the decoder is frozen.
The stream's task has kind ``translation``, so the shared switch loss sends its batches to the
seq2seq branch (:func:`jaxtl.objectives.seq2seq.loss_branch`), which reads the explicit decoder
inputs; the regime needs no branch of its own.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from flax import nnx

from jaxtl.data import tokenize
from jaxtl.data.batch import IGNORE
from jaxtl.data.prepare import SplitData, TaskData, corpus_lines, eval_batches
from jaxtl.models import seq2seq
from jaxtl.objectives import seq2seq as seq2seq_objective
from jaxtl.objectives.base import Objective

KEY = "mass"  # heads/mass/...: the decoder


def mass_mask(
    batch: dict[str, np.ndarray], rng: np.random.Generator, *, mask_id: int, span: float = 0.5
) -> dict[str, np.ndarray]:
    """MASS inputs for a batch of ``[CLS] x_1 … x_n [SEP] pad`` rows (a new dict).

    A row with n >= 1 words gets one span of ``k = max(1, round(span * n))`` words starting at a
    uniform ``u`` in ``1 … n-k+1``: ``input_ids`` has [MASK] there; ``decoder_input_ids[j] =
    x_{u+j-1}`` (the previous tokens: [CLS] when u = 1), ``decoder_positions[j] = u + j`` and
    ``decoder_labels[j] = x_{u+j}`` for j < k, padding / IGNORE after. Padding rows are left
    alone (their labels stay IGNORE)."""
    ids = batch["input_ids"]
    b, t = ids.shape
    new = ids.copy()
    dec_in = np.zeros((b, t), np.int32)
    dec_pos = np.zeros((b, t), np.int32)
    labels = np.full((b, t), IGNORE, np.int32)
    lengths = batch["attention_mask"].sum(1)
    for r in range(b):
        n = int(lengths[r]) - 2  # words between [CLS] and [SEP]
        if n < 1 or batch["example_weight"][r] <= 0:
            continue
        k = max(1, int(round(span * n)))
        u = int(rng.integers(1, n - k + 2))
        new[r, u : u + k] = mask_id
        dec_in[r, :k] = ids[r, u - 1 : u + k - 1]
        dec_pos[r, :k] = np.arange(u, u + k)
        labels[r, :k] = ids[r, u : u + k]
    out = dict(batch)
    out.update(input_ids=new, decoder_input_ids=dec_in, decoder_positions=dec_pos,
               decoder_labels=labels)  # fmt: skip
    return out


class MassBatches:
    """The wrapped iterator's batches, MASS-masked afresh from ``(seed, epoch, position)``
    (the same state API, so checkpoints resume the same spans)."""

    def __init__(self, inner: Any, mask_id: int, span: float, seed: int):
        self.inner, self.mask_id, self.span, self.seed = inner, mask_id, span, int(seed)

    def __iter__(self) -> MassBatches:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        where = [self.seed, 7919, int(self.inner.epoch), int(self.inner.position)]
        batch = next(self.inner)
        return mass_mask(batch, np.random.default_rng(where), mask_id=self.mask_id, span=self.span)

    def state(self) -> dict[str, Any]:
        return self.inner.state()

    def restore(self, state: dict[str, Any]) -> None:
        self.inner.restore(state)


class Mass(Objective):
    name = "mass"

    def __init__(self, corpus: str, *, span: float = 0.5, weight: float = 1.0):
        if not 0.0 < span < 1.0:
            raise ValueError(f"pretrain.mass_span={span}: must be in (0, 1)")
        self.corpus, self.span, self.weight = corpus, float(span), float(weight)

    def setup(self, encoder, tokenizer, targets, config) -> None:
        super().setup(encoder, tokenizer, targets, config)
        if tokenizer.mask_token_id is None or tokenizer.cls_token_id is None:
            raise ValueError("MASS needs a tokenizer with [MASK] and [CLS]/[SEP] tokens")
        self.encoder, self.tokenizer, self.config = encoder, tokenizer, config

    def stream(self, config, tokenizer, *, index: int, seed: int) -> TaskData:
        lines = corpus_lines(config, tokenizer, self.corpus, index=index, key=KEY, seed=seed)
        mask_id = int(tokenizer.mask_token_id)
        # Dev and test: the corpus' held-out lines, masked once with fixed seeds (comparable
        # evaluations; dev keeps its original seeds).
        splits: dict[str, SplitData] = {}
        for n, split in enumerate(("dev", "test")):
            if split not in lines.task.splits:
                continue
            held = lines.task.head(split, config.data.max_eval_examples)
            enc = tokenize.encode(lines.task, held, tokenizer, max_length=config.data.max_length,
                                  task_id=index)  # fmt: skip
            batches = [
                mass_mask(
                    b,
                    np.random.default_rng([seed, 104729, i] + [n] * n),
                    mask_id=mask_id,
                    span=self.span,
                )  # fmt: skip
                for i, b in enumerate(
                    eval_batches(enc, config, tokenizer, buckets=config.data.buckets)
                )  # fmt: skip
            ]
            splits[split] = SplitData(split, held, enc, batches, True,
                                      tuple(config.data.buckets))  # fmt: skip
        ev = splits["dev"].batches if "dev" in splits else []
        # A seq2seq stream: kind "translation" sends its batches to the seq2seq branches; it is
        # scored by the span's perplexity (reported, never selected on).
        task = dataclasses.replace(lines.task, kind="translation", metrics=("perplexity",),
                                   main_metric="")  # fmt: skip
        it = MassBatches(lines.train_iter, mask_id, self.span, seed)
        self.data = dataclasses.replace(lines, task=task, train_iter=it, eval_batches=ev,
                                        splits=splits)  # fmt: skip
        return self.data

    def heads(self, lm_head: nnx.Module | None) -> dict[str, nnx.Module]:
        """The decoder (``model.decoder`` sizes; its kind must be ``transformer``)."""
        d, tok = self.config.model.decoder, self.tokenizer
        if d.kind != "transformer":
            raise ValueError(f"model.decoder.kind={d.kind!r}: MASS uses a transformer decoder")
        decoder = seq2seq.build_decoder(
            "transformer", len(tok), self.encoder.hidden_size, bos_id=int(tok.cls_token_id),
            eos_id=int(tok.sep_token_id), pad_id=tokenize.pad_id(tok),
            rngs=nnx.Rngs(self.config.seed + 7919), hidden_size=d.hidden_size,
            num_layers=d.num_layers, num_heads=d.num_heads,
            intermediate_size=d.intermediate_size, dropout=d.dropout,
            max_positions=max(self.config.data.max_length, *self.config.data.buckets),
        )  # fmt: skip
        return {KEY: decoder}

    def branch(self, model, batch, out, rngs, *, head_dropout_key, train_mode):
        """The span loss: the seq2seq branch, fed this stream's explicit decoder inputs."""
        return seq2seq_objective.loss_branch(
            model, self.data, batch, head_dropout_key=head_dropout_key, train_mode=train_mode,
            weight=self.weight,
        )  # fmt: skip
