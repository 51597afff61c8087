"""The one batch layout every task produces and every step consumes.

All tasks, whatever their label kind, produce batches with the same keys, dtypes and ranks, so
that a single compiled step serves every task of a run: the only shapes that vary are the batch
size B (fixed per run) and the sequence length T (one of a few bucket lengths). Fields a task does
not use are filled with their neutral value and ignored by its loss.

==================  ===========  ===============================================================
key                 dtype/shape  meaning
==================  ===========  ===============================================================
input_ids           int32[B,T]   token ids (padding = tokenizer pad id)
attention_mask      int32[B,T]   1 for real tokens, 0 for padding
token_type_ids      int32[B,T]   segment ids (0 for single sentences, 1 for the second segment)
token_labels        int32[B,T]   per-token targets: tag ids (tagging), token ids (MLM/CLM),
                                 IGNORE (-100) where no loss applies (sub-words, padding, CLS)
label               int32[B]     class id (classification / pair classification), else 0
score               float32[B]   regression target (e.g. STS-B similarity), else 0
example_weight      float32[B]   1 for real examples, 0 for rows that only pad a batch to B
task_id             int32[B]     index of the example's task in the run's task list
==================  ===========  ===============================================================

Padding rows (example_weight 0) let evaluation cover every example exactly once with fixed B.
Packed batches (several examples per row) add ``segment_ids``/``position_ids`` [B,T] and widen
``label``/``score``/``example_weight`` to [B,S] plus ``example_index`` [B,S]: see
:mod:`jaxtl.data.packing`.
For decoder targets (translation as in CoVe) ``target_ids``/``target_mask`` int32[B,T] are added
by the tasks that need them; a run only mixes tasks with the same keys. A multilabel task's
batches add ``label_set`` float32[B,C] ([B,S,C] packed): 1 where class c applies. A training
run that mixes it with other tasks gives every batch a ``label_set`` as wide as its widest
multilabel task's (:func:`with_label_set`, zeros for other kinds), so its one train program
still takes them all.
"""

from __future__ import annotations

import numpy as np

IGNORE = -100

KEYS = (
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "token_labels",
    "label",
    "score",
    "example_weight",
    "task_id",
)


def empty(batch_size: int, seq_len: int, pad_id: int = 0) -> dict[str, np.ndarray]:
    """A batch of padding rows: every key present, neutral values, weight 0."""
    return {
        "input_ids": np.full((batch_size, seq_len), pad_id, np.int32),
        "attention_mask": np.zeros((batch_size, seq_len), np.int32),
        "token_type_ids": np.zeros((batch_size, seq_len), np.int32),
        "token_labels": np.full((batch_size, seq_len), IGNORE, np.int32),
        "label": np.zeros((batch_size,), np.int32),
        "score": np.zeros((batch_size,), np.float32),
        "example_weight": np.zeros((batch_size,), np.float32),
        "task_id": np.zeros((batch_size,), np.int32),
    }


def with_label_set(batch: dict[str, np.ndarray], width: int) -> dict[str, np.ndarray]:
    """``batch`` with a ``label_set`` of ``width`` classes per example: its own zero-padded
    (a multilabel task with fewer classes than the run's widest), or zeros (another kind)."""
    rows = batch["label"].shape  # (B,) or, packed, (B, S)
    out = np.zeros(rows + (width,), np.float32)
    own = batch.get("label_set")
    if own is not None:
        if own.shape[-1] > width:
            raise ValueError(f"label_set has {own.shape[-1]} classes, more than {width}")
        out[..., : own.shape[-1]] = own
    return {**batch, "label_set": out}


def check(batch: dict[str, np.ndarray]) -> None:
    """Raise ValueError naming the key when a batch breaks the layout above."""
    missing = [k for k in KEYS if k not in batch]
    if missing:
        raise ValueError(f"batch is missing keys {missing}")
    b, t = batch["input_ids"].shape
    for k in ("attention_mask", "token_type_ids", "token_labels"):
        if batch[k].shape != (b, t):
            raise ValueError(f"batch[{k!r}] has shape {batch[k].shape}, expected {(b, t)}")
    for k in ("label", "score", "example_weight", "task_id"):
        if batch[k].shape != (b,):
            raise ValueError(f"batch[{k!r}] has shape {batch[k].shape}, expected {(b,)}")
