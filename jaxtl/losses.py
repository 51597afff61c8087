"""Losses and predictions per task kind, in the step's "sum + denominator" convention.

Each function takes the head's output for a batch in the layout of ``jaxtl.data.batch`` and
returns ``(loss_sum, denominator)``: the summed loss over the terms that count (real examples,
or real labelled tokens for tagging and LMs) and how many terms that is. Padding rows
(``example_weight`` 0) and ignored tokens (``IGNORE``) contribute nothing.

Packed batches (:mod:`jaxtl.data.packing`) need little of their own: sentence heads give one
row of logits per segment ([B,S,C] against ``label``/``score``/``example_weight`` [B,S]) and
token losses read ``token_labels`` as always; a qa loss and its spans are taken per window.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxtl.data.batch import IGNORE


def _cross_entropy(
    logits: jax.Array, labels: jax.Array, smoothing: float, class_weights: jax.Array | None = None
) -> tuple[jax.Array, jax.Array | None]:
    """(Cross-entropy against integer ``labels``, each term's weight). With ``smoothing`` > 0
    against the target ``(1 - smoothing) * one_hot + smoothing / classes``
    (``optax.smooth_labels``), which is transformers' ``LabelSmoother``: ``(1 - s) * nll + s *
    mean over classes of -log p``. With ``class_weights`` [C] (``train.class_weights``),
    PyTorch's ``CrossEntropyLoss(weight=w, label_smoothing=s)`` term by term: ``(1 - s) *
    w[y] * nll + s * mean over classes of -w_c log p_c``, weighing ``w[y]`` in the mean (else
    the weight is None: every term weighs 1)."""
    x = logits.astype(jnp.float32)
    if class_weights is not None:
        cw = class_weights.astype(jnp.float32)
        logp = jax.nn.log_softmax(x, -1)
        gold = jnp.take(cw, labels, mode="clip")
        nll = -jnp.take_along_axis(logp, labels[..., None], -1, mode="clip")[..., 0]
        ce = gold * nll
        if smoothing:
            ce = (1.0 - smoothing) * ce - smoothing * (logp * cw).mean(-1)
        return ce, gold
    if not smoothing:
        return optax.softmax_cross_entropy_with_integer_labels(x, labels), None
    target = optax.smooth_labels(jax.nn.one_hot(labels, x.shape[-1]), smoothing)
    return optax.softmax_cross_entropy(x, target), None


def classification(
    logits: jax.Array, batch: dict, smoothing: float = 0.0, class_weights: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    w = batch["example_weight"]
    ce, cw = _cross_entropy(logits, batch["label"], smoothing, class_weights)
    return (ce * w).sum(), (w if cw is None else w * cw).sum()


def label_set(batch: dict, num_labels: int) -> jax.Array:
    """A multilabel batch's 0/1 targets [..., num_labels]; zeros for a batch without them (the
    branch of a multilabel task traced for another task's batch, which never runs it)."""
    rows = tuple(batch["label"].shape)
    got = batch.get("label_set")
    if got is None:
        return jnp.zeros(rows + (num_labels,), jnp.float32)
    got = got[..., :num_labels].astype(jnp.float32)  # another multilabel task's may be wider
    return jnp.pad(got, ((0, 0),) * len(rows) + ((0, num_labels - got.shape[-1]),))


def multilabel(
    logits: jax.Array, batch: dict, class_weights: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """One sigmoid per class: binary cross-entropy averaged over the classes of each example,
    so the batch's loss is transformers' (``BCEWithLogitsLoss`` over examples x classes, its
    ``problem_type="multi_label_classification"``). ``class_weights`` [C] is PyTorch's
    ``pos_weight``: class c's positive term ``-y log sigmoid(x)`` is multiplied by it."""
    w = batch["example_weight"]
    x = logits.astype(jnp.float32)
    y = label_set(batch, x.shape[-1])
    if class_weights is None:
        bce = optax.sigmoid_binary_cross_entropy(x, y)
    else:
        pos = class_weights.astype(jnp.float32)
        bce = -(pos * y * jax.nn.log_sigmoid(x) + (1.0 - y) * jax.nn.log_sigmoid(-x))
    return (bce.mean(-1) * w).sum(), w.sum()


def regression(logits: jax.Array, batch: dict) -> tuple[jax.Array, jax.Array]:
    w = batch["example_weight"]
    err = logits[..., 0].astype(jnp.float32) - batch["score"]
    return (err * err * w).sum(), w.sum()


def row_weight(batch: dict) -> jax.Array:
    """[B]: a row's weight, > 0 when it holds a real example (any, for a packed row)."""
    w = batch["example_weight"]
    return w if w.ndim == 1 else w.max(axis=-1)


def labelled_tokens(batch: dict) -> jax.Array:
    """[B,T]: the tokens a token-level loss counts (label not IGNORE, in a row that weighs)."""
    return (batch["token_labels"] != IGNORE) & (row_weight(batch)[:, None] > 0)


def token_classification(
    logits: jax.Array, batch: dict, smoothing: float = 0.0, class_weights: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """Tagging, MLM and CLM alike: cross-entropy on tokens whose label is not IGNORE (each
    weighing its gold tag's ``class_weights``, when given)."""
    labels = batch["token_labels"]
    valid = labelled_tokens(batch)
    safe = jnp.where(valid, labels, 0)
    ce, cw = _cross_entropy(logits, safe, smoothing, class_weights)
    den = valid.astype(jnp.float32) if cw is None else jnp.where(valid, cw, 0.0)
    return jnp.where(valid, ce, 0.0).sum(), den.sum()


def previous_token_labels(batch: dict) -> jax.Array:
    """A backward LM's targets for [B,T] ids: ``labels[t] = ids[t-1]``; the first token, padding
    and a token after padding are IGNORE (the mirror of the causal ``token_labels``)."""
    ids, real = batch["input_ids"], batch["attention_mask"] > 0
    prev = jnp.pad(ids[:, :-1], ((0, 0), (1, 0)))
    ok = real & jnp.pad(real[:, :-1], ((0, 0), (1, 0)))
    return jnp.where(ok, prev, IGNORE).astype(jnp.int32)


def lm(logits: jax.Array | tuple[jax.Array, jax.Array], batch: dict) -> tuple[jax.Array, jax.Array]:
    """Masked / causal LM: :func:`token_classification`. A (forward, backward) pair of logits
    (ELMo's biLM, :class:`jaxtl.models.bilstm.BiLMHead`) scores the forward ones on the batch's
    next-token labels and the backward ones on :func:`previous_token_labels`: one sum over both
    directions, so the loss is the mean of the two directions' losses (equal token counts)."""
    if not isinstance(logits, tuple):
        return token_classification(logits, batch)
    fwd, bwd = logits
    f_sum, f_den = token_classification(fwd, batch)
    b_sum, b_den = token_classification(
        bwd, {**batch, "token_labels": previous_token_labels(batch)}
    )
    return f_sum + b_sum, f_den + b_den


def _qa_marks(batch: dict) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A qa batch's ([B,T] positions an answer may start or end on, [B,T] gold start, [B,T]
    gold end): ``token_labels`` as :func:`jaxtl.data.tokenize.encode_qa` marks them."""
    labels = batch["token_labels"]
    valid = labels != IGNORE
    safe = jnp.where(valid, labels, 0)
    return valid, (safe % 2) == 1, safe >= 2  # QA_START is 1, QA_END 2, both 3


def _qa_segments(batch: dict, valid: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A qa batch's windows: ([B,S,T] which of the ``valid`` answer positions are window s's,
    [B,S] each window's weight, [B,T] each token's position in its window). A packed row holds
    S windows (``segment_ids`` s + 1), an unpacked one a single window (S = 1)."""
    w = batch["example_weight"]
    if "segment_ids" in batch:
        slots = jnp.arange(1, w.shape[1] + 1, dtype=batch["segment_ids"].dtype)
        in_window = batch["segment_ids"][:, None, :] == slots[None, :, None]
        return in_window & valid[:, None, :], w, batch["position_ids"]
    t = valid.shape[1]
    return valid[:, None, :], w[:, None], jnp.broadcast_to(jnp.arange(t), valid.shape)


def qa(logits: jax.Array, batch: dict) -> tuple[jax.Array, jax.Array]:
    """Extractive QA, as transformers' ``*ForQuestionAnswering``: the mean of the start and end
    positions' cross-entropies, logits [B,T,2] (start, end). The softmax runs over the
    positions an answer may take (the context and the "no answer" token), not the question's
    or the padding's, so no probability is spent where no answer can be — in a packed row
    over each window's own positions, so windows sharing a row are scored as if alone."""
    valid, is_start, is_end = _qa_marks(batch)
    m, w, _ = _qa_segments(batch, valid)  # [B,S,T]
    x = jnp.where(m[..., None], logits.astype(jnp.float32)[:, None], -1e9)  # [B,S,T,2]
    logp = jax.nn.log_softmax(x, axis=2)
    start = jnp.argmax(m & is_start[:, None, :], axis=-1)  # [B,S]
    end = jnp.argmax(m & is_end[:, None, :], axis=-1)
    nll_start = -jnp.take_along_axis(logp[..., 0], start[..., None], 2)[..., 0]
    nll_end = -jnp.take_along_axis(logp[..., 1], end[..., None], 2)[..., 0]
    w = w * m.any(-1)
    return (0.5 * (nll_start + nll_end) * w).sum(), w.sum()


def best_spans(logits: jax.Array, batch: dict, max_tokens: int = 30) -> tuple[jax.Array, jax.Array]:
    """Per window, the best answer span and its score: ([B,2] first and last token, [B,2] the
    span's start + end logit and the "no answer" token's; [B,S,2] each for a packed batch,
    its tokens counted from the window's first). The span starts and ends on context tokens
    of one window, in order, at most ``max_tokens`` long (``data.max_answer_length``; 30 as
    transformers' ``run_qa``), as the question-answering pipeline decodes; the "no answer"
    token is a window's first position an answer may take. Ties go to the earliest start,
    then the earliest end."""
    m, _, position = _qa_segments(batch, _qa_marks(batch)[0])  # [B,S,T]
    x = logits.astype(jnp.float32)
    t = x.shape[1]
    null = jnp.argmax(m, axis=-1)  # [B,S]
    is_null = (jax.nn.one_hot(null, t, dtype=jnp.bool_) & m.any(-1)[..., None]).any(1)
    window = jnp.argmax(m, axis=1)  # [B,T]: each answer position's window
    ok = m.any(1) & ~is_null  # [B,T]
    pos = jnp.arange(t)
    gap = pos[None, :] - pos[:, None]  # [T(start), T(end)]: end - start
    band = (gap >= 0) & (gap < max_tokens)
    allowed = ok[:, :, None] & ok[:, None, :] & band[None]
    allowed &= window[:, :, None] == window[:, None, :]
    score = jnp.where(allowed, x[:, :, None, 0] + x[:, None, :, 1], -jnp.inf)  # [B,T,T]
    end_of = jnp.argmax(score, axis=-1)  # [B,T]: each start's best end
    from_start = jnp.max(score, axis=-1)
    per_window = jnp.where(m, from_start[:, None, :], -jnp.inf)  # [B,S,T]
    s = jnp.argmax(per_window, axis=-1)  # [B,S]
    e = jnp.take_along_axis(end_of, s, 1)
    best = jnp.max(per_window, axis=-1)
    null_score = jnp.take_along_axis(x[..., 0] + x[..., 1], null, 1)
    span = jnp.stack([jnp.take_along_axis(position, s, 1),
                      jnp.take_along_axis(position, e, 1)], -1).astype(jnp.int32)  # fmt: skip
    scores = jnp.stack([best, null_score], -1)
    if "segment_ids" not in batch:
        span, scores = span[:, 0], scores[:, 0]
    return span, scores


# The kinds train.label_smoothing applies to (a keyword of their loss functions).
SMOOTHED = ("classification", "tagging")
# The kinds train.class_weights applies to (the class_weights keyword of their loss functions).
WEIGHTED = ("classification", "multilabel", "tagging")

LOSSES = {
    "classification": classification,
    "multilabel": multilabel,
    "regression": regression,
    "tagging": token_classification,
    "lm": lm,
    "qa": qa,
}


def predictions(
    kind: str, logits: jax.Array, batch: dict, num_probs: int = 1, max_answer_tokens: int = 30
) -> dict[str, jax.Array]:
    """The eval step's outputs (same keys and shapes for every kind so one program serves all
    tasks). ``pred_probs`` [B, num_probs]: class probabilities of a classification task (of a
    multilabel task: each class's own sigmoid probability), zero-padded to ``num_probs`` (the
    most classes of any task in the run). ``pred_span`` / ``pred_span_score`` [B, 2]: a qa
    row's best answer span and its scores (:func:`best_spans`, spans of at most
    ``max_answer_tokens``)."""
    b, t = batch["input_ids"].shape
    rows = tuple(batch["label"].shape)  # (B,), or (B, S) for a packed batch
    out = {
        "pred_probs": jnp.zeros(rows + (num_probs,), jnp.float32),
        "pred_label": jnp.zeros(rows, jnp.int32),
        "pred_score": jnp.zeros(rows, jnp.float32),
        "pred_tokens": jnp.zeros((b, t), jnp.int32),
        "pred_span": jnp.zeros(rows + (2,), jnp.int32),
        "pred_span_score": jnp.zeros(rows + (2,), jnp.float32),
        "nll_sum": jnp.zeros((), jnp.float32),
        "token_count": jnp.zeros((), jnp.float32),
    }
    if kind in ("classification", "multilabel"):
        out["pred_label"] = jnp.argmax(logits, -1).astype(jnp.int32)
        x = logits.astype(jnp.float32)
        probs = jax.nn.sigmoid(x) if kind == "multilabel" else jax.nn.softmax(x, -1)
        pad = ((0, 0),) * (probs.ndim - 1) + ((0, num_probs - probs.shape[-1]),)
        out["pred_probs"] = jnp.pad(probs, pad)
    elif kind == "regression":
        out["pred_score"] = logits[..., 0].astype(jnp.float32)
    elif kind == "qa":
        out["pred_span"], out["pred_span_score"] = best_spans(logits, batch, max_answer_tokens)
    elif kind in ("tagging", "lm"):
        # a biLM's pair: the forward direction's predictions (both count in the perplexity)
        first = logits[0] if isinstance(logits, tuple) else logits
        out["pred_tokens"] = jnp.argmax(first, -1).astype(jnp.int32)
        if kind == "lm":
            nll, count = lm(logits, batch)
            out["nll_sum"], out["token_count"] = nll, count
    else:
        raise ValueError(f"no predictions for task kind {kind!r}")
    return out
