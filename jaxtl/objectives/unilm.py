"""UNILM (Dong et al. 2019): one bidirectional Transformer, three language models by attention mask.

The encoder (BERT family, with its tied MLM head) is trained on masked tokens — 15% of the real,
non-special tokens, BERT's 80/10/10 — and what a position may attend to decides which language
model that is. One kind per batch, drawn with the paper's proportions (``pretrain.unilm``):

- ``bidirectional`` (1/3): every token sees every real token — BERT's masked LM.
- ``seq2seq`` (1/3): the source segment (token type 0: ``[CLS]`` source ``[SEP]``) attends within
  itself, both ways; the target segment (type 1: target ``[SEP]``) sees the whole source and the
  target tokens at or left of it. Masked tokens of both segments are predicted.
- ``left_to_right`` (1/6): each token sees itself and the tokens to its left.
- ``right_to_left`` (1/6): each token sees itself and the tokens to its right.

The unidirectional kinds predict the way the paper's figure draws them: cloze-style, the
predicted token replaced by ``[MASK]`` at its own position, so position t's output is computed
from ``[MASK]`` and its left (right) context. (BERT's 10% "keep the original" masks let such a
position see its own token, as in the paper.) Padding queries see only themselves (their
outputs are never read); no real query sees padding.

Data: rows are pairs of *consecutive sentences* of the corpus. Each line is split into sentences
after ``.``, ``!`` or ``?`` followed by whitespace; walking the sentences in corpus order, the
source takes whole sentences while they fit into half of the ``block_size - 3`` token budget
(at least one), the target takes the following sentences while the row fits, and the next row
starts at the next unused sentence (longest-first truncation when a single sentence is too long;
a last sentence with nothing after it is dropped). Every kind reads the same rows ``[CLS] source
[SEP] target [SEP]``; only ``seq2seq`` uses the split. Lines of a corpus are consecutive text
(WikiText paragraphs, with headings dropped), so a pair may cross a paragraph boundary.

The attention mask rides in the batch (``batch["pair_mask"]``, bool [B,1,T,T], built on the host
by :func:`unilm_mask`) and :func:`jaxtl.objectives.supervised.switch_loss` hands it to the
encoder, so a UNILM step is exactly one encoder pass; dev batches carry theirs too, so the dev
pseudo-perplexity is measured under the same mixture of masks (fixed per dev batch). Kinds and
token masks are drawn from numpy Generators seeded by ``(seed, epoch, position)`` of the wrapped
iterator, like :class:`jaxtl.data.masking.MaskedBatches`: a restored iterator replays the same
kinds and masks. Deviations from the paper: single-token masking only (no bigram/trigram spans),
and the mask kind is drawn per batch (not per example).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from jaxtl.data import tokenize
from jaxtl.data.masking import Masking
from jaxtl.data.prepare import (
    SplitData,
    TaskData,
    eval_batches,
    load_task,
    report_only,
    train_batches,
)
from jaxtl.models import bert as bert_lib
from jaxtl.models.lm import LM_KEY
from jaxtl.objectives.base import Objective
from jaxtl.objectives.supervised import task_branch

KINDS = ("bidirectional", "seq2seq", "left_to_right", "right_to_left")
# The paper's proportions (Section 2.3): 1/3 bidirectional, 1/3 seq2seq, 1/6 each direction.
PAPER_MIX = {"bidirectional": 1 / 3, "seq2seq": 1 / 3, "left_to_right": 1 / 6,
             "right_to_left": 1 / 6}  # fmt: skip
_KIND_STREAM = 7  # extra seed word: the kind's draw is independent of the token masks'
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


# ------------------------------------------------------------------------------------ masks
def unilm_mask(kind: str, attention_mask: np.ndarray, segment_ids: np.ndarray) -> np.ndarray:
    """bool [B,1,T,T], ``[b, 0, query, key]``: which keys each query may attend to under ``kind``
    (module docstring). ``attention_mask`` [B,T] 1 for real tokens; ``segment_ids`` [B,T] 0 for
    the source (``[CLS]`` … first ``[SEP]``), 1 for the target (only ``seq2seq`` reads them)."""
    real = np.asarray(attention_mask) > 0
    seg = np.asarray(segment_ids)
    t = real.shape[1]
    q = np.arange(t)[:, None]
    k = np.arange(t)[None, :]
    if kind == "bidirectional":
        rule = np.ones((1, t, t), bool)
    elif kind == "left_to_right":
        rule = (k <= q)[None]
    elif kind == "right_to_left":
        rule = (k >= q)[None]
    elif kind == "seq2seq":
        src_key = (seg == 0)[:, None, :]
        tgt_query = (seg == 1)[:, :, None]
        rule = src_key | (tgt_query & (seg == 1)[:, None, :] & (k <= q)[None])
    else:
        raise ValueError(f"UNILM mask kind must be one of {KINDS}, got {kind!r}")
    mask = rule & real[:, None, :] & real[:, :, None]
    mask |= ~real[:, :, None] & np.eye(t, dtype=bool)[None]  # padding queries: themselves only
    return mask[:, None]


def mixture(weights: Mapping[str, float], where: str = "pretrain.unilm") -> np.ndarray:
    """float64 [len(KINDS)]: the kinds' probabilities from ``weights`` (normalised); one-line
    ValueError naming ``where.<kind>`` for a negative or unknown weight, or all zero."""
    unknown = sorted(set(weights) - set(KINDS))
    if unknown:
        raise ValueError(f"{where}: unknown mask kinds {unknown}; choose from {KINDS}")
    w = np.asarray([float(weights.get(k, 0.0)) for k in KINDS])
    for k, v in zip(KINDS, w, strict=True):
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"{where}.{k} must be a finite weight >= 0, got {v}")
    if w.sum() <= 0:
        raise ValueError(f"{where}: every weight is 0; give at least one of {KINDS} a weight")
    return w / w.sum()


def draw_kind(probs: np.ndarray, rng: np.random.Generator) -> str:
    return KINDS[int(rng.choice(len(KINDS), p=probs))]


# ------------------------------------------------------------------------------------ data
def sentences(lines: Sequence[str]) -> list[str]:
    """The sentences of ``lines`` in corpus order (split after ``.``/``!``/``?`` + whitespace)."""
    return [s for line in lines for s in _SENTENCE_END.split(line.strip()) if s]


def pair_rows(
    pieces: Sequence[Sequence[int]], *, block_size: int, cls_id: int, sep_id: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(input ids, segment ids) of the rows ``[CLS] source [SEP] target [SEP]`` built from the
    tokenised sentences ``pieces`` (module docstring: whole consecutive sentences, the source up
    to half the budget)."""
    budget = block_size - 3
    if budget < 2:
        raise ValueError(f"pretrain.block_size={block_size} is too small for a UNILM pair row")
    half = budget // 2
    sents = [list(p) for p in pieces if len(p)]
    rows, segs = [], []
    i, n = 0, len(sents)
    while i + 1 < n:
        src = sents[i]
        i += 1
        while i + 1 < n and len(src) + len(sents[i]) <= half:
            src = src + sents[i]
            i += 1
        tgt = sents[i]
        i += 1
        while i < n and len(src) + len(tgt) + len(sents[i]) <= budget:
            tgt = tgt + sents[i]
            i += 1
        a, b = len(src), len(tgt)
        if a + b > budget:  # longest first: the shorter side keeps all it can
            if a <= half:
                b = budget - a
            elif b <= budget - half:
                a = budget - b
            else:
                a, b = half, budget - half
        ids = [cls_id, *src[:a], sep_id, *tgt[:b], sep_id]
        rows.append(np.asarray(ids, np.int32))
        segs.append(np.asarray([0] * (a + 2) + [1] * (b + 1), np.int32))
    return rows, segs


def encode_pairs(
    lines: Sequence[str], tokenizer: Any, *, block_size: int, task_id: int
) -> tokenize.Encoded:
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise ValueError("UNILM needs a tokenizer with [CLS] and [SEP] (or <s> and </s>) tokens")
    sents = sentences(lines)
    pieces = tokenizer(sents, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    rows, segs = pair_rows(
        pieces, block_size=block_size, cls_id=tokenizer.cls_token_id,
        sep_id=tokenizer.sep_token_id,
    )  # fmt: skip
    n = len(rows)
    return tokenize.Encoded(rows, segs, np.zeros(n, np.int32), np.zeros(n, np.float32), task_id)


class UnilmBatches:
    """A UNILM training iterator: each batch of the wrapped iterator gets a mask kind, fresh
    token masks and its ``pair_mask``, all drawn from ``(seed, epoch, position)`` (so
    :meth:`state` / :meth:`restore` are the wrapped iterator's)."""

    def __init__(
        self,
        inner: Any,  # a jaxtl.data.batching.TrainBatches (epoch, position, state, restore)
        masking: Masking,
        probs: np.ndarray,
        seed: int,
        *,
        segment_types: bool = True,
    ):
        self.inner, self.masking, self.probs = inner, masking, np.asarray(probs)
        self.seed, self.segment_types = int(seed), bool(segment_types)

    def kind_at(self, where: Sequence[int]) -> str:
        return draw_kind(self.probs, np.random.default_rng([*where, _KIND_STREAM]))

    def __iter__(self) -> UnilmBatches:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        where = [self.seed, int(self.inner.epoch), int(self.inner.position)]
        batch = next(self.inner)
        return apply(batch, self.kind_at(where), self.masking, np.random.default_rng(where),
                     segment_types=self.segment_types)  # fmt: skip

    def state(self) -> dict[str, Any]:
        return self.inner.state()

    def restore(self, state: dict[str, Any]) -> None:
        self.inner.restore(state)


def apply(
    batch: dict[str, np.ndarray], kind: str, masking: Masking, rng: np.random.Generator, *,
    segment_types: bool,
) -> dict[str, np.ndarray]:  # fmt: skip
    """``batch`` masked for prediction with the attention mask of ``kind`` (a new dict). Without
    ``segment_types`` (an encoder with no segment embeddings) token types are zeroed after the
    mask is built from them."""
    out = masking.apply(batch, rng)
    out["pair_mask"] = unilm_mask(kind, batch["attention_mask"], batch["token_type_ids"])
    if not segment_types:
        out["token_type_ids"] = np.zeros_like(batch["token_type_ids"])
    return out


def unilm_stream(
    config: ml_collections.ConfigDict,
    tokenizer: Any,
    corpus: str,
    *,
    index: int,
    block_size: int,
    masking: Masking,
    probs: np.ndarray,
    seed: int,
    segment_types: bool = True,
    with_eval: bool = True,
) -> TaskData:
    """A corpus as UNILM pair rows (train iterator: kinds and masks per batch; dev: fixed)."""
    task = load_task(corpus, config)
    if task.kind != "lm":
        raise ValueError(f"pretrain.corpus={corpus!r} is a {task.kind} task; expected text (lm)")
    lines = [ex.text for ex in task.head("train", config.data.max_train_examples)]
    enc = encode_pairs(lines, tokenizer, block_size=block_size, task_id=index)
    if len(enc) == 0:
        raise ValueError(
            f"corpus {corpus!r}: {len(lines)} training lines give no pair of consecutive "
            "sentences; use more text"
        )
    it = UnilmBatches(
        train_batches(enc, config, tokenizer, buckets=(block_size,), seed=seed), masking, probs,
        seed, segment_types=segment_types,
    )  # fmt: skip
    splits: dict[str, SplitData] = {}
    for n, split in enumerate(("dev", "test")):  # held-out text, kinds and masks fixed per batch
        if not with_eval or split not in task.splits:
            continue
        held = task.head(split, config.data.max_eval_examples)
        henc = encode_pairs([ex.text for ex in held], tokenizer, block_size=block_size,
                            task_id=index)  # fmt: skip
        ev: list[dict[str, np.ndarray]] = []
        if len(henc):
            for i, b in enumerate(eval_batches(henc, config, tokenizer, buckets=(block_size,))):
                tag = [n] * n  # dev keeps its original seeds
                kind = draw_kind(
                    probs, np.random.default_rng([seed, 104729, i, _KIND_STREAM, *tag])
                )
                rng = np.random.default_rng([seed, 104729, jax.process_index(), i, *tag])
                ev.append(apply(b, kind, masking, rng, segment_types=segment_types))
        splits[split] = SplitData(split, held, henc, ev, True, (block_size,))
    ev = splits["dev"].batches if "dev" in splits else []
    # Every kind masks (at most) masking.prob of a row's tokens: the LM loss decodes those only.
    return TaskData(report_only(task), index, LM_KEY, len(enc), it, ev, "dev", splits,
                    label_fraction=masking.prob)  # fmt: skip


# ------------------------------------------------------------------------------------ objective
class Unilm(Objective):
    """UNILM pretraining as an :class:`~jaxtl.objectives.base.Objective`: pair rows of a corpus,
    the tied MLM head, one of four attention masks per batch (module docstring)."""

    name = "unilm"
    needs_lm_head = True

    def __init__(
        self,
        corpus: str,
        *,
        block_size: int = 128,
        mlm_prob: float = 0.15,
        whole_word: bool = False,
        mix: Mapping[str, float] | None = None,
        weight: float = 1.0,
    ):
        self.corpus, self.block_size = corpus, int(block_size)
        self.mlm_prob, self.whole_word, self.weight = float(mlm_prob), bool(whole_word), weight
        self.probs = mixture(dict(PAPER_MIX if mix is None else mix))

    def setup(self, encoder, tokenizer, targets, config) -> None:
        super().setup(encoder, tokenizer, targets, config)
        if not isinstance(encoder, bert_lib.BertEncoder):
            raise ValueError(
                f"pretrain.objective='unilm' needs a BERT-family encoder (bidirectional, with "
                f"per-query attention masks), not {getattr(encoder, 'family', encoder)!r}"
            )
        self.masking = Masking.for_tokenizer(
            tokenizer, encoder.tied_embedding().shape[0], prob=self.mlm_prob,
            whole_word=self.whole_word,
        )  # fmt: skip
        self.segment_types = encoder.cfg.type_vocab_size >= 2

    def stream(self, config, tokenizer, *, index: int, seed: int) -> TaskData:
        self.data = unilm_stream(
            config, tokenizer, self.corpus, index=index, block_size=self.block_size,
            masking=self.masking, probs=self.probs, seed=seed, segment_types=self.segment_types,
        )  # fmt: skip
        return self.data

    def heads(self, lm_head: nnx.Module | None) -> dict[str, nnx.Module]:
        if lm_head is None:
            raise ValueError("the UNILM objective needs the encoder's LM head")
        return {LM_KEY: lm_head}

    def branch(self, model, batch, out, rngs, *, head_dropout_key, train_mode):
        # The step's encoder pass already ran under batch["pair_mask"]: this is the MLM loss.
        return task_branch(
            model, self.data, batch, head_dropout_key=head_dropout_key, train_mode=train_mode,
            weight=self.weight,
        )  # fmt: skip
