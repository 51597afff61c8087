"""The supervised loss and predictions over many tasks: the encoder runs once per batch and
``lax.switch`` picks the batch's head.

One compiled program serves every task (the switch index is data), and only the chosen branch
runs, so a head gets gradients from its own task's batches only. An :class:`Objective` may own
one of the task indices (its unlabelled or LM stream); its branch replaces the head loss there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxtl import losses, paths
from jaxtl.data.prepare import TaskData
from jaxtl.objectives import seq2seq
from jaxtl.objectives.base import Objective


def segment_kw(batch: dict) -> dict[str, Any]:
    """What a sentence head needs of a packed batch (``jaxtl.data.packing``): its segments and
    how many slots a row has; nothing for an unpacked batch."""
    if "segment_ids" not in batch:
        return {}
    return {"segment_ids": batch["segment_ids"], "num_segments": batch["label"].shape[1]}


def _idle_branch(operands):
    """A branch no batch of a cached stage takes (an LM stream: the cache holds no last hidden
    state for it); it only has to trace."""
    return jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)


# An LM stream whose rows carry labels on fewer than this share of tokens (MLM) is decoded at
# its labelled positions only.
SPARSE_LABELS_BELOW = 0.5


def masked_positions_cap(length: int, fraction: float) -> int:
    """How many positions of a row of ``length`` tokens :func:`sparse_lm` decodes when about
    ``fraction`` of them carry a label: 1.5x the expected count plus 8. For BERT's 15% masking
    of 128-token blocks that is 37 slots for 18.7 labels on average: masking WikiText-103's
    valid blocks 20 times (38,560 rows) never exceeded it, whole-word masking did in 2 rows
    (max 40), so about one batch of 16 rows in 1,200 takes the dense path."""
    return min(int(length), int(np.ceil(1.5 * fraction * length)) + 8)


def decodes_masked_only(td: TaskData) -> bool:
    """Whether an LM stream's loss decodes only its labelled positions (:func:`sparse_lm`)."""
    return td.task.kind == "lm" and td.label_fraction < SPARSE_LABELS_BELOW


def sparse_lm(
    head: Any,
    last: jax.Array,
    embedding: jax.Array,
    batch: dict,
    fraction: float,
    *,
    with_predictions: bool = False,
    **head_kw: Any,
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """A masked LM's loss decoding only the labelled positions: ``(nll_sum, count,
    pred_tokens)``, the same values as decoding every position (:func:`losses.lm`).
    ``with_predictions``: argmax predictions at labelled positions, 0 elsewhere (eval); else
    None, so a train step computes no argmax.

    The vocabulary projection is most of an MLM step (MiniLM: 384 x 30,522 per token, about as
    many FLOPs as the six encoder layers), and only the ~15% masked tokens have a label. Each
    row's labelled positions are gathered into a fixed number of slots
    (:func:`masked_positions_cap`, so shapes stay static); a batch with a row that has more
    labels than slots takes the dense path instead (``lax.cond``: exact either way)."""
    b, t, h = last.shape
    cap = masked_positions_cap(t, fraction)
    labels = batch["token_labels"]
    valid = losses.labelled_tokens(batch)
    rows = jnp.arange(b)[:, None]

    def gathered(_):
        rank = jnp.cumsum(valid, axis=1) - 1
        pos = (
            jnp.full((b, cap), t, jnp.int32)
            .at[rows, jnp.where(valid, rank, cap)]
            .set(jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t)), mode="drop")
        )  # row r's labelled positions first, then t (no position: padding slots)
        keep = pos < t
        at = jnp.minimum(pos, t - 1)
        x = jnp.take_along_axis(last, at[..., None], axis=1)  # [B, cap, H]
        logits = head(x, embedding, **head_kw).astype(jnp.float32)
        lab = jnp.where(keep, jnp.take_along_axis(labels, at, axis=1), 0)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, lab)
        nll = jnp.where(keep, ce, 0.0).sum()
        if not with_predictions:
            return nll
        pred = jnp.where(keep, jnp.argmax(logits, -1), 0).astype(jnp.int32)
        return nll, jnp.zeros((b, t), jnp.int32).at[rows, pos].set(pred, mode="drop")

    def dense(_):
        logits = head(last, embedding, **head_kw)
        nll, _ = losses.token_classification(logits, batch)
        if not with_predictions:
            return nll
        return nll, jnp.where(valid, jnp.argmax(logits, -1), 0).astype(jnp.int32)

    fits = jnp.all(valid.sum(axis=1) <= cap)
    out = jax.lax.cond(fits, gathered, dense, None)
    nll, pred = out if with_predictions else (out, None)
    return nll, valid.sum().astype(jnp.float32), pred


def blank_predictions(batch: dict, num_probs: int) -> dict[str, jax.Array]:
    """The eval step's outputs with every key zero (the shared layout, see
    :func:`losses.predictions`): a branch fills in the keys it produces."""
    zeros = jnp.zeros(batch["label"].shape + (1,))  # a row per example, packed or not
    return losses.predictions("regression", zeros, batch, num_probs)


def _features(model: Any, batch: dict, **kw: Any):
    """(encoder output, features). A batch that carries a frozen encoder's cached output
    (``batch["features"]``, :mod:`jaxtl.features`) skips the encoder: (None, features)."""
    if "features" in batch:
        return None, model.cached_features(batch["features"])
    if "segment_ids" in batch:  # packed: block-diagonal attention, positions per example
        kw["segment_ids"], kw["position_ids"] = batch["segment_ids"], batch["position_ids"]
    # A stream may carry its own attention pattern (UNILM's masks: jaxtl.objectives.unilm).
    if "pair_mask" in batch:
        kw["pair_mask"] = batch["pair_mask"]
    return model.features(
        batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], **kw
    )


def task_branch(
    model: Any,
    td: TaskData,
    batch: dict,
    *,
    head_dropout_key: jax.Array,
    train_mode: bool,
    weight: float = 1.0,
    label_smoothing: float = 0.0,
    class_weights: Any = None,
):
    """The ``lax.switch`` branch of one task: ``f((feats, last_hidden)) -> (loss_sum, den)``.
    ``label_smoothing`` applies to the kinds in :data:`jaxtl.losses.SMOOTHED`; ``class_weights``
    (one per class, :mod:`jaxtl.class_weights`) to those in :data:`jaxtl.losses.WEIGHTED`.

    ``lm``-kind tasks decode the last hidden state (not the representation a frozen encoder
    hands task heads: the LM head was trained on it) with the encoder's tied embedding.
    """
    if td.task.kind == "translation":  # the head is a decoder: jaxtl.objectives.seq2seq
        return seq2seq.loss_branch(model, td, batch, head_dropout_key=head_dropout_key,
                                   train_mode=train_mode, weight=weight)  # fmt: skip
    head_def, head_state = nnx.split(model.heads[td.key])
    embedding = model.encoder.tied_embedding() if td.task.kind == "lm" else None
    loss_kw: dict[str, Any] = {}
    if td.task.kind in losses.SMOOTHED:
        loss_kw["smoothing"] = label_smoothing
    if class_weights is not None and td.task.kind in losses.WEIGHTED:
        loss_kw["class_weights"] = np.asarray(class_weights, np.float32)

    def f(operands):
        feats, last = operands
        # Rebuild the head inside the branch: NNX modules that run their own transforms (the
        # BiLSTM under a tagger uses nnx.scan) cannot reach Variables across lax.switch's trace.
        head = nnx.merge(head_def, jax.tree.map(jnp.asarray, head_state))
        rngs = nnx.Rngs(dropout=head_dropout_key)
        if decodes_masked_only(td):
            total, den, _ = sparse_lm(head, last, embedding, batch, td.label_fraction,
                                      deterministic=not train_mode, rngs=rngs)  # fmt: skip
            return total * float(weight), den
        if td.task.kind == "lm":
            logits = head(last, embedding, deterministic=not train_mode, rngs=rngs)
        else:
            logits = head(feats, batch["attention_mask"], deterministic=not train_mode, rngs=rngs,
                          **segment_kw(batch))  # fmt: skip
        total, den = losses.LOSSES[td.task.kind](logits, batch, **loss_kw)
        return total * float(weight), den

    return f


def switch_loss(
    task_list: Sequence[TaskData],
    weights: dict[str, float] | None = None,
    objective: Objective | None = None,
    *,
    encoder_dropout: bool = True,
    label_smoothing: float = 0.0,
    class_weights: dict[str, Any] | None = None,
):
    """The step's loss over ``task_list`` (indices 0..n-1, in order); ``weights`` by task name.
    ``label_smoothing``: the classification and tagging tasks' (``train.label_smoothing``);
    ``class_weights``: per-class weights by task name (``train.class_weights``).
    With ``objective``, the task at ``objective.data.index`` is its stream and takes its branch.
    ``encoder_dropout=False`` runs the encoder deterministically in training too (a frozen
    encoder: its features are then a fixed function of the input, as a feature cache stores)."""
    weights = weights or {}
    if [td.index for td in task_list] != list(range(len(task_list))):
        raise ValueError("task indices must be 0..n-1 in list order")
    own = objective.data.index if objective is not None else -1

    def loss_fn(model, batch, rngs, train_mode):
        out, feats = _features(
            model, batch, deterministic=not (train_mode and encoder_dropout), rngs=rngs
        )
        # nnx.Rngs cannot be advanced inside a lax.switch branch (another trace level): draw
        # the heads' dropout key here and give each branch its own Rngs.
        head_dropout_key = rngs.dropout()
        branches = []
        for td in task_list:
            if out is None and (td.index == own or td.task.kind == "lm"):
                branches.append(_idle_branch)
            elif td.index == own:
                branches.append(
                    objective.branch(
                        model,
                        batch,
                        out,
                        rngs,
                        head_dropout_key=head_dropout_key,
                        train_mode=train_mode,
                    )
                )
            else:
                branches.append(
                    task_branch(
                        model,
                        td,
                        batch,
                        head_dropout_key=head_dropout_key,
                        train_mode=train_mode,
                        weight=float(weights.get(td.task.name, 1.0)),
                        label_smoothing=label_smoothing,
                        class_weights=(class_weights or {}).get(td.task.name),
                    )
                )
        idx = batch["task_id"][0]
        last = feats if out is None else out.last_hidden_state
        total, den = jax.lax.switch(idx, branches, (feats, last))
        return total, {"denominator": den}

    return loss_fn


def task_predict_branch(model: Any, td: TaskData, batch: dict, num_probs: int = 1):
    """The eval-time ``lax.switch`` branch of one task: ``f((feats, last)) -> predictions``."""
    if td.task.kind == "translation":  # decoded tokens (jaxtl.objectives.seq2seq)
        return seq2seq.predict_branch(model, td, batch, blank_predictions(batch, num_probs))
    head_def, head_state = nnx.split(model.heads[td.key])
    embedding = model.encoder.tied_embedding() if td.task.kind == "lm" else None

    def f(operands):
        feats, last = operands
        head = nnx.merge(head_def, jax.tree.map(jnp.asarray, head_state))  # see task_branch
        if decodes_masked_only(td):
            nll, count, pred = sparse_lm(head, last, embedding, batch, td.label_fraction,
                                         with_predictions=True)  # fmt: skip
            blank = blank_predictions(batch, num_probs)
            return blank | {"pred_tokens": pred, "nll_sum": nll, "token_count": count}
        if td.task.kind == "lm":
            logits = head(last, embedding)
        else:
            logits = head(feats, batch["attention_mask"], **segment_kw(batch))
        return losses.predictions(td.task.kind, logits, batch, num_probs,
                                  max_answer_tokens=td.task.max_answer_tokens)  # fmt: skip

    return f


def switch_predict(task_list: Sequence[TaskData]):
    """Predictions of the batch's task. A stream with no head of its own (consistency, CVT:
    never evaluated) repeats the first headed task's branch so every branch has one shape."""

    num_probs = max([td.task.num_labels for td in task_list
                     if td.task.kind in ("classification", "multilabel")] or [1])  # fmt: skip

    def predict_fn(model, batch):
        out, feats = _features(model, batch)
        headed = [td for td in task_list if td.key in model.heads]
        branches = [
            task_predict_branch(model, td if td.key in model.heads else headed[0], batch, num_probs)
            for td in task_list
        ]
        if out is None:  # cached features: an LM stream's branch is never taken (see _idle_branch)
            idle = lambda ops: blank_predictions(batch, num_probs)  # noqa: E731
            branches = [idle if td.task.kind == "lm" else br
                        for td, br in zip(task_list, branches)]  # fmt: skip
        last = feats if out is None else out.last_hidden_state
        return jax.lax.switch(batch["task_id"][0], branches, (feats, last))

    return predict_fn


def heads_active_fn(
    params: Any, task_list: Sequence[TaskData], owners: dict[str, set[int]] | None = None
):
    """Heads update only on batches of the task indices that own them; every other parameter
    always updates. A head absent from the batch keeps its params and optimizer moments as they
    are (as if it had no gradient, like PyTorch's skipped ``None`` grads).

    By default a task's head is owned by that task alone; ``owners`` ({head key: task indices})
    adds or overrides owners (consistency training trains the target heads on unlabelled batches).
    Streams sharing a head (two LM corpora through one LM head) each update it.
    """
    own: dict[str, set[int]] = {}
    for td in task_list:
        own.setdefault(td.key, set()).add(td.index)
    owners = own | dict(owners or {})
    flat = list(paths.flatten(params))

    def active_fn(batch):
        idx = batch["task_id"][0]
        flags = {}
        for p in flat:
            parts = p.split("/")
            if parts[0] == "heads" and parts[1] in owners:
                flags[p] = jnp.any(jnp.asarray(sorted(owners[parts[1]]), jnp.int32) == idx)
            else:
                flags[p] = jnp.bool_(True)
        return paths.unflatten(flags, params)

    return active_fn
