"""Task metrics: thin wrappers over scikit-learn, scipy, seqeval and sacrebleu, and SQuAD's.

Values are fractions in [0, 1] (correlations in [-1, 1]), except ``perplexity`` and ``bleu``
(sacrebleu's 0–100 scale). :func:`score_task` scores a task from eval-step outputs and the
batches they came from; :func:`glue_average` combines per-task results as the GLUE score does.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from jaxtl.data.batch import IGNORE


def accuracy(gold: Sequence[int], pred: Sequence[int]) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(gold, pred))


def f1(gold: Sequence[int], pred: Sequence[int], average: str = "binary") -> float:
    """F1 of class 1 (``binary``, as GLUE MRPC) or the unweighted mean over classes (``macro``)."""
    from sklearn.metrics import f1_score

    return float(f1_score(gold, pred, average=average, zero_division=0))


def macro_f1(gold: Sequence[int], pred: Sequence[int]) -> float:
    return f1(gold, pred, "macro")


def micro_f1(gold: Any, pred: Any) -> float:
    """F1 over every (example, class) decision: a multilabel task's 0/1 rows [N, C]."""
    return f1(gold, pred, "micro")


def matthews(gold: Sequence[int], pred: Sequence[int]) -> float:
    """Matthews correlation (CoLA); 0 when a side is constant."""
    from sklearn.metrics import matthews_corrcoef

    return float(matthews_corrcoef(gold, pred))


def pearson(gold: Sequence[float], pred: Sequence[float]) -> float:
    from scipy.stats import pearsonr

    if np.std(pred) == 0 or np.std(gold) == 0:
        return 0.0  # undefined; scipy would warn and return nan
    return float(pearsonr(gold, pred)[0])


def spearman(gold: Sequence[float], pred: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    if np.std(pred) == 0 or np.std(gold) == 0:
        return 0.0
    return float(spearmanr(gold, pred)[0])


def span_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> float:
    """Entity-level micro F1 with conlleval semantics (seqeval default mode)."""
    from seqeval.metrics import f1_score

    return float(f1_score([list(s) for s in gold], [list(s) for s in pred]))


def token_accuracy(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> float:
    g = [t for s in gold for t in s]
    p = [t for s in pred for t in s]
    if len(g) != len(p):
        raise ValueError(f"token_accuracy: {len(g)} gold tags but {len(p)} predicted")
    return float(np.mean([a == b for a, b in zip(g, p)])) if g else 0.0


def perplexity(nll_sum: float, token_count: float) -> float:
    """exp(total negative log-likelihood / tokens)."""
    if token_count <= 0:
        raise ValueError("perplexity: token_count must be positive")
    return float(math.exp(nll_sum / token_count))


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu defaults, one reference per sentence), 0–100."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation (its official ``evaluate-v2.0.py``): lower case, no
    punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _answer_f1(gold: str, pred: str) -> float:
    g, p = normalize_answer(gold).split(), normalize_answer(pred).split()
    if not g or not p:  # "no answer" on either side: right only when both are
        return float(g == p)
    same = sum((collections.Counter(g) & collections.Counter(p)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def _best_over_golds(
    score: Callable[[str, str], float], gold: Sequence[Sequence[str]], pred: Sequence[str]
) -> float:
    """Per question the best ``score`` against any of its gold answers ("" for a question with
    none), averaged over the questions, as SQuAD's script scores every metric."""
    return float(np.mean([max(score(g, p) for g in (golds or [""]))
                          for golds, p in zip(gold, pred)]))  # fmt: skip


def exact_match(gold: Sequence[Sequence[str]], pred: Sequence[str]) -> float:
    """SQuAD exact match: per question, 1 when the normalised answer equals any gold one's
    (a question with no gold answer: when the answer is empty too), averaged."""
    return _best_over_golds(lambda g, p: float(normalize_answer(g) == normalize_answer(p)),
                            gold, pred)  # fmt: skip


def squad_f1(gold: Sequence[Sequence[str]], pred: Sequence[str]) -> float:
    """SQuAD F1: per question, the best token-overlap F1 against its gold answers, averaged."""
    return _best_over_golds(_answer_f1, gold, pred)


CLASS_METRICS = {"accuracy": accuracy, "f1": f1, "macro_f1": macro_f1, "matthews": matthews}
# A multilabel task's 0/1 rows [N, C] (scikit-learn's multilabel-indicator format): F1 micro
# (the main one, as transformers' run_classification) and macro over classes; subset accuracy
# counts an example right only when its whole label set is.
# A class is predicted for an example when its sigmoid probability exceeds the task's threshold
# (Task.threshold: train.multilabel_threshold, 0.5 = logit > 0 by default, or one per class
# under train.tune_thresholds: jaxtl.thresholds).
MULTILABEL_METRICS = {"micro_f1": micro_f1, "macro_f1": macro_f1, "subset_accuracy": accuracy}
SCORE_METRICS = {"pearson": pearson, "spearman": spearman}
TAG_METRICS = {"span_f1": span_f1, "token_accuracy": token_accuracy}


def _subset(gold: Sequence[Sequence[str]], pred: Sequence[str], answerable: bool
            ) -> tuple[list[Sequence[str]], list[str]]:  # fmt: skip
    keep = [i for i, g in enumerate(gold) if bool(g) == answerable]
    return [gold[i] for i in keep], [pred[i] for i in keep]


def has_answer_exact(gold: Sequence[Sequence[str]], pred: Sequence[str]) -> float:
    """SQuAD 2.0's ``HasAns_exact``: exact match over the questions that have an answer."""
    return exact_match(*_subset(gold, pred, True))


def has_answer_f1(gold: Sequence[Sequence[str]], pred: Sequence[str]) -> float:
    """SQuAD 2.0's ``HasAns_f1``: F1 over the questions that have an answer."""
    return squad_f1(*_subset(gold, pred, True))


def no_answer_exact(gold: Sequence[Sequence[str]], pred: Sequence[str]) -> float:
    """SQuAD 2.0's ``NoAns_exact`` (its ``NoAns_f1`` too): the share of unanswerable questions
    answered with nothing."""
    return exact_match(*_subset(gold, pred, False))


# A qa task's gold answers per question (a list of texts, empty when unanswerable) against
# the predicted text ("" for "no answer"); SQuAD 2.0's breakdown by answerability is scored
# only where a split has questions of that kind (as its official script reports it).
QA_METRICS = {"exact_match": exact_match, "f1": squad_f1, "has_answer_exact": has_answer_exact,
              "has_answer_f1": has_answer_f1, "no_answer_exact": no_answer_exact}  # fmt: skip


# Per-token keys: in a packed batch (jaxtl.data.packing) an example is a slice of its row.
TOKEN_KEYS = ("token_labels", "pred_tokens", "input_ids", "token_type_ids", "attention_mask")


def real_rows(
    batches: Sequence[Mapping], outputs: Sequence[Mapping], key: str, src: str
) -> list[Any]:
    """Per batch, ``key`` of its real examples (example_weight > 0) from the outputs
    (``src="out"``) or the batch (``src="batch"``), in batch order. A packed batch gives its
    examples row by row, slot by slot; a per-token key then gives each example's own tokens (a
    list of arrays of different lengths)."""
    out: list[Any] = []
    for b, o in zip(batches, outputs, strict=True):
        w = np.asarray(b["example_weight"])
        arr = np.asarray((o if src == "out" else b)[key])
        if w.ndim == 2 and key in TOKEN_KEYS:
            seg = np.asarray(b["segment_ids"])
            out.append([arr[r][seg[r] == s + 1] for r, s in zip(*np.nonzero(w > 0))])
        else:
            out.append(arr[w > 0])
    return out


def tag_sequences(
    label_names: Sequence[str], batches: Sequence[Mapping], outputs: Sequence[Mapping]
) -> tuple[list[list[str]], list[list[str]]]:
    """Gold and predicted tag strings per example, one per word (first sub-token positions)."""
    names = np.asarray(label_names)
    gold, pred = [], []
    for labels, preds in zip(
        real_rows(batches, outputs, "token_labels", "batch"),
        real_rows(batches, outputs, "pred_tokens", "out"),
    ):
        for lab, p in zip(labels, preds):
            words = lab != IGNORE
            gold.append(list(names[lab[words]]))
            pred.append(list(names[np.clip(p[words], 0, len(names) - 1)]))
    return gold, pred


def multilabel_arrays(
    task: Any, batches: Sequence[Mapping], outputs: Sequence[Mapping]
) -> tuple[np.ndarray, np.ndarray]:
    """A multilabel task's gold rows (0/1, [N, C]) and class probabilities [N, C]."""
    c = task.num_labels
    gold = np.concatenate(real_rows(batches, outputs, "label_set", "batch")).astype(np.int64)
    return gold, np.concatenate(real_rows(batches, outputs, "pred_probs", "out"))[:, :c]


def score_task(
    task: Any,
    outputs: Sequence[Mapping],
    batches: Sequence[Mapping],
    detokenize: Callable[[Any], list[str]] | None = None,
) -> dict[str, float]:
    """Every metric of ``task`` from eval outputs and their batches (rows with weight > 0).

    ``outputs[i]`` holds ``pred_label`` int[B] (classification), ``pred_score`` float[B]
    (regression), ``pred_tokens`` int[B, T] (tagging), ``nll_sum`` / ``token_count`` (lm) or
    ``hypotheses`` / ``references`` lists of strings (translation).
    """
    if len(outputs) != len(batches):
        raise ValueError(f"score_task: {len(outputs)} outputs for {len(batches)} batches")
    kind = task.kind
    results: dict[str, float] = {}
    gold: Any
    pred: Any
    table: Mapping[str, Callable[..., float]]
    if kind == "classification":
        gold = np.concatenate(real_rows(batches, outputs, "label", "batch"))
        pred = np.concatenate(real_rows(batches, outputs, "pred_label", "out"))
        table = CLASS_METRICS
    elif kind == "multilabel":
        gold, probs = multilabel_arrays(task, batches, outputs)
        pred = (probs > np.asarray(task.threshold)).astype(np.int64)  # one, or one per class
        table = MULTILABEL_METRICS
    elif kind == "regression":
        gold = np.concatenate(real_rows(batches, outputs, "score", "batch"))
        pred = np.concatenate(real_rows(batches, outputs, "pred_score", "out"))
        table = SCORE_METRICS
    elif kind == "tagging":
        gold, pred = tag_sequences(task.label_names, batches, outputs)
        table = TAG_METRICS
    elif kind == "lm":
        nll = sum(float(np.sum(o["nll_sum"])) for o in outputs)
        count = sum(float(np.sum(o["token_count"])) for o in outputs)
        return {m: perplexity(nll, count) for m in task.metrics if m == "perplexity"}
    elif kind == "qa":  # answers are decoded per question, over its windows: from records
        raise ValueError("score_task: a qa task is scored from its records (score_records)")
    elif kind == "translation":
        if "perplexity" in task.metrics:  # a seq2seq stream scored by its targets' NLL (MASS)
            nll = sum(float(np.sum(o["nll_sum"])) for o in outputs)
            count = sum(float(np.sum(o["token_count"])) for o in outputs)
            results["perplexity"] = perplexity(nll, count)
        if "bleu" not in task.metrics:
            return results
        if detokenize is not None:  # decoded token rows (jaxtl.objectives.seq2seq) -> text
            hyp = [h for rows in real_rows(batches, outputs, "pred_tokens", "out")
                   for h in detokenize(rows)]  # fmt: skip
            ref = [r for rows in real_rows(batches, outputs, "target_ids", "batch")
                   for r in detokenize(rows)]  # fmt: skip
        else:
            hyp = [h for o in outputs for h in o["hypotheses"]]
            ref = [r for o in outputs for r in o["references"]]
        return results | {"bleu": bleu(hyp, ref)}
    else:
        raise ValueError(f"score_task: unknown task kind {kind!r}")
    return _score(task, table, gold, pred)


def _score(task: Any, table: Mapping[str, Callable[..., float]], gold: Any, pred: Any
           ) -> dict[str, float]:  # fmt: skip
    results: dict[str, float] = {}
    for m in task.metrics:
        if m not in table:
            raise ValueError(f"metric {m!r} does not apply to {task.kind} task {task.name!r}")
        results[m] = table[m](gold, pred)
    return results


def score_records(task: Any, records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Every metric of ``task`` from prediction records (:mod:`jaxtl.predictions`) that carry
    ``gold``: what ``--predict`` reports for a labelled input file. A word left untagged (no
    sub-token of its own) counts as ``O``; a translation is scored by BLEU alone (perplexity
    needs the reference's likelihood, which a record does not hold)."""
    if not records or any("gold" not in r for r in records):
        raise ValueError(f"score_records: every record of task {task.name!r} needs its gold")
    kind = task.kind
    if kind == "classification":
        ids = {n: i for i, n in enumerate(task.label_names)}
        gold_ids = [ids[r["gold"]] for r in records]
        return _score(task, CLASS_METRICS, gold_ids, [ids[r["label"]] for r in records])
    if kind == "multilabel":
        ids = {n: i for i, n in enumerate(task.label_names)}

        def rows(key: str) -> np.ndarray:
            out = np.zeros((len(records), len(ids)), np.int64)
            for i, r in enumerate(records):
                out[i, [ids[n] for n in r[key]]] = 1
            return out

        return _score(task, MULTILABEL_METRICS, rows("gold"), rows("labels"))
    if kind == "regression":
        scores = [float(r["gold"]) for r in records]
        return _score(task, SCORE_METRICS, scores, [float(r["score"]) for r in records])
    if kind == "tagging":
        tags = [list(r["gold"]) for r in records]
        pred = [[t if t is not None else "O" for t in r["tags"]] for r in records]
        return _score(task, TAG_METRICS, tags, pred)
    if kind == "translation":
        if "bleu" not in task.metrics:
            return {}
        return {"bleu": bleu([r["translation"] for r in records], [r["gold"] for r in records])}
    if kind == "qa":
        golds = [list(r["gold"]) for r in records]
        kinds = {bool(g) for g in golds}
        absent = {"has_answer_exact", "has_answer_f1"} if True not in kinds else set()
        absent |= {"no_answer_exact"} if False not in kinds else set()
        scored = dataclasses.replace(task, metrics=tuple(m for m in task.metrics
                                                         if m not in absent))  # fmt: skip
        return _score(scored, QA_METRICS, golds, [r["answer"] for r in records])
    raise ValueError(f"score_records: task {task.name!r} of kind {kind!r} has no records")


# GLUE's per-task metrics; a task with two metrics contributes their mean, as on the leaderboard.
GLUE_METRICS = {
    "cola": ("matthews",),
    "sst2": ("accuracy",),
    "mrpc": ("f1", "accuracy"),
    "stsb": ("pearson", "spearman"),
    "qqp": ("f1", "accuracy"),
    "mnli": ("accuracy",),
    "qnli": ("accuracy",),
    "rte": ("accuracy",),
    "wnli": ("accuracy",),
}


def _glue_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower().removeprefix("glue/").removeprefix("tfds:glue/"))


def glue_average(
    results: Mapping[str, Mapping[str, float]],
    metrics_for: Mapping[str, Sequence[str]] | None = None,
) -> float:
    """Mean over tasks of each task's score, where a task's score is the mean of its GLUE metrics
    (MRPC: F1 and accuracy; STS-B: Pearson and Spearman). Other tasks need ``metrics_for``."""
    scores = []
    for task, values in results.items():
        wanted = (metrics_for or {}).get(task) or GLUE_METRICS.get(_glue_key(task))
        if not wanted:
            raise KeyError(
                f"glue_average: no GLUE metrics known for task {task!r}; pass metrics_for"
            )
        missing = [m for m in wanted if m not in values]
        if missing:
            raise KeyError(f"glue_average: task {task!r} lacks metrics {missing}")
        scores.append(float(np.mean([values[m] for m in wanted])))
    if not scores:
        raise ValueError("glue_average: no results")
    return float(np.mean(scores))
