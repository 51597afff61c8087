"""The ``translation`` task kind in the shared switch loss: the task's head is a decoder
(:mod:`jaxtl.models.seq2seq`) over the encoder's last hidden states.

Training is teacher forcing on the batch's ``target_ids`` (``[BOS] y … [EOS]``, see
:mod:`jaxtl.data.batch`): the decoder reads ``target_ids[:, :-1]`` and is scored on
``target_ids[:, 1:]`` where ``target_mask`` is 1 — the step's "sum + denominator" convention, so
accumulation and the loss log work unchanged. Evaluation decodes (greedy, or beam search when the
head's ``beam`` > 1) up to the batch's length and also reports the teacher-forced NLL; the
task's scorer (:func:`jaxtl.metrics.score_task` with the run's detokenizer) turns the tokens into
text and computes sacrebleu BLEU against the detokenised references.

MASS batches (:mod:`jaxtl.objectives.mass`) go through the same branch with their decoder inputs
given explicitly (:func:`decoder_inputs`).

The decoder attends to the encoder's *last* hidden state, not the run's representation: CoVe's
decoder is trained on the top BiLSTM layer, and a target stage may hand its own heads another mix
(``model.representation=embeddings_and_last``) without changing what the decoder saw.

A run may mix a translation task with tasks whose batches carry no decoder targets (CoVe's target
classifier). ``lax.switch`` traces every branch on every batch structure, so on such a batch this
task's branch (never taken: the batch's ``task_id`` is another task's) returns zeros of the right
shape instead of reading keys that are not there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from etils import epath
from flax import nnx

from jaxtl import fileio
from jaxtl.data import tokenize
from jaxtl.data.batch import IGNORE
from jaxtl.data.prepare import TaskData, load_task
from jaxtl.models import seq2seq

log = logging.getLogger(__name__)
TARGET_TOKENIZER = "target_tokenizer"  # <workdir>/target_tokenizer: a trained target vocabulary


def saved_target_tokenizer(workdir: Any) -> Any:
    """The target tokenizer a run trained (``model.decoder.vocab_size > 0``), or None."""
    path = epath.Path(workdir) / TARGET_TOKENIZER
    if not (path / "tokenizer.json").exists():
        return None
    import pathlib

    from jaxtl.models import hf

    with fileio.local_dir_from(path) as local:  # tokenizers read local folders only
        return hf.load_tokenizer(pathlib.Path(local))


def target_tokenizer(config: Any, workdir: Any, task_names: Sequence[str], tokenizer: Any) -> Any:
    """The tokenizer of translation targets: ``tokenizer`` when ``model.decoder.vocab_size`` is
    0; else a cased WordPiece of that many pieces trained on the translation tasks' training
    targets (:func:`jaxtl.data.tokenize.train_wordpiece`) and saved in the workdir, which a
    resumed run and ``jaxtl.load`` read back instead of training again. (The ``tokenizers``
    trainer breaks frequency ties differently from process to process, so two fresh runs may
    learn slightly different vocabularies; a run and its resumptions share one.)"""
    size = int(config.model.decoder.get("vocab_size", 0))
    if size < 0:
        raise ValueError(f"model.decoder.vocab_size={size}: must be >= 0")
    if size == 0:
        return tokenizer
    saved = saved_target_tokenizer(workdir)
    if saved is not None:
        return saved
    texts = []
    for name in task_names:
        task = load_task(name, config)
        if task.kind == "translation":
            train = task.head("train", config.data.max_train_examples)
            texts += [ex.target for ex in train if ex.target]
    if not texts:
        return tokenizer  # no translation task: nothing to train on, nothing to decode
    tok = tokenize.train_wordpiece(texts, size)
    with fileio.local_dir_for(epath.Path(workdir) / TARGET_TOKENIZER) as local:
        tok.save_pretrained(local)
    log.info("target tokenizer: WordPiece of %d pieces from %d training targets", len(tok),
             len(texts))  # fmt: skip
    return tok


def decoder_inputs(batch: dict):
    """(decoder inputs, positions or None, labels, valid) of a seq2seq batch, or None for a
    batch with no decoder side. Translation batches carry ``target_ids`` (shifted here for
    teacher forcing); MASS batches (:mod:`jaxtl.objectives.mass`) carry the decoder's inputs,
    positions and labels explicitly."""
    if "decoder_input_ids" in batch:
        labels = batch["decoder_labels"]
        return batch["decoder_input_ids"], batch["decoder_positions"], labels, labels != IGNORE
    if "target_ids" in batch:
        dec_in, labels, valid = seq2seq.shift(batch["target_ids"], batch["target_mask"])
        return dec_in, None, labels, valid
    return None


def loss_branch(
    model: Any, td: TaskData, batch: dict, *, head_dropout_key: jax.Array, train_mode: bool,
    weight: float = 1.0,
):  # fmt: skip
    """A seq2seq task's ``lax.switch`` branch: ``f((feats, last)) -> (loss_sum, den)``."""
    inputs = decoder_inputs(batch)
    if inputs is None:
        return lambda operands: (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32))
    dec_in, positions, labels, valid = inputs
    head_def, head_state = nnx.split(model.heads[td.key])

    def f(operands):
        _, last = operands
        decoder = nnx.merge(head_def, jax.tree.map(jnp.asarray, head_state))
        ok = valid & (batch["example_weight"][:, None] > 0)
        logits = decoder(last, batch["attention_mask"], dec_in, positions,
                         deterministic=not train_mode,
                         rngs=nnx.Rngs(dropout=head_dropout_key))  # fmt: skip
        total, den = seq2seq.token_nll(logits, labels, ok)
        return total * float(weight), den

    return f


def predict_branch(model: Any, td: TaskData, batch: dict, blank: dict):
    """Eval branch: ``pred_tokens`` [B,T] decoded (BOS first), ``nll_sum`` / ``token_count``
    teacher-forced; every other key as ``blank`` (the shared prediction layout). A batch with
    explicit decoder inputs (MASS) gets the teacher-forced NLL only."""
    inputs = decoder_inputs(batch)
    if inputs is None:
        return lambda operands: blank
    head_def, head_state = nnx.split(model.heads[td.key])
    if "target_ids" not in batch:
        dec_in, positions, labels, valid = inputs

        def nll_only(operands):
            decoder = nnx.merge(head_def, jax.tree.map(jnp.asarray, head_state))
            logits = decoder(operands[1], batch["attention_mask"], dec_in, positions)
            ok = valid & (batch["example_weight"][:, None] > 0)
            nll, count = seq2seq.token_nll(logits, labels, ok)
            return blank | {"nll_sum": nll, "token_count": count}

        return nll_only

    def f(operands):
        _, last = operands
        decoder = nnx.merge(head_def, jax.tree.map(jnp.asarray, head_state))
        mask = batch["attention_mask"]
        max_len = batch["input_ids"].shape[1]
        tokens = seq2seq.generate(decoder, last, mask, max_len, beam=int(decoder.beam),
                                  alpha=float(decoder.alpha))  # fmt: skip
        dec_in, labels, valid = seq2seq.shift(batch["target_ids"], batch["target_mask"])
        valid &= batch["example_weight"][:, None] > 0
        nll, count = seq2seq.token_nll(decoder(last, mask, dec_in), labels, valid)
        return blank | {"pred_tokens": tokens, "nll_sum": nll, "token_count": count}

    return f
