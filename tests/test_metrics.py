"""Metrics against hand-computed values, and score_task over padded eval batches."""

import math

import numpy as np
import pytest

from jaxtl import metrics
from jaxtl.data import batch as layout
from jaxtl.data import get_task
from jaxtl.data.batch import IGNORE

TOL = 1e-9


def test_classification_metrics_by_hand():
    gold = [1, 1, 0, 0, 1, 0]
    pred = [1, 0, 0, 1, 1, 0]
    # tp=2 fp=1 fn=1 tn=2
    assert abs(metrics.accuracy(gold, pred) - 4 / 6) < TOL
    assert abs(metrics.f1(gold, pred) - 2 / 3) < TOL  # 2tp / (2tp + fp + fn) = 4/6
    mcc = (2 * 2 - 1 * 1) / math.sqrt(3 * 3 * 3 * 3)
    assert abs(metrics.matthews(gold, pred) - mcc) < TOL
    # macro: class 0 has the same counts mirrored, so macro = binary here
    assert abs(metrics.macro_f1(gold, pred) - 2 / 3) < TOL


def test_correlations_by_hand():
    gold = [1.0, 2.0, 3.0, 4.0]
    pred = [1.0, 3.0, 2.0, 5.0]
    # pearson: centred gold (-1.5,-.5,.5,1.5), pred (-1.75,.25,-.75,2.25)
    num = 2.625 + -0.125 + -0.375 + 3.375
    den = math.sqrt(5.0) * math.sqrt(3.0625 + 0.0625 + 0.5625 + 5.0625)
    assert abs(metrics.pearson(gold, pred) - num / den) < TOL
    assert abs(metrics.spearman(gold, pred) - 0.8) < TOL  # 1 - 6*2/(4*15)
    assert metrics.pearson(gold, [2.0] * 4) == 0.0


def test_span_f1_conlleval_semantics():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["I-ORG", "O"]]
    # gold spans: PER, LOC, ORG; predicted: PER, ORG(wrong place), ORG (I- start counts as span)
    # correct: PER and sentence-2 ORG -> p = 2/3, r = 2/3
    assert abs(metrics.span_f1(gold, pred) - 2 / 3) < TOL
    assert abs(metrics.token_accuracy(gold, pred) - 4 / 6) < TOL


def test_perplexity_and_bleu():
    assert abs(metrics.perplexity(2.0 * 10, 10) - math.exp(2.0)) < TOL
    assert abs(metrics.bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) - 100) < 1e-6
    assert metrics.bleu(["a b c d"], ["w x y z"]) < 1e-6


def test_score_task_classification_ignores_padding_rows():
    task = get_task("builtin/sentiment")
    b = layout.empty(4, 8)
    b["label"][:] = [1, 0, 1, 0]
    b["example_weight"][:] = [1, 1, 1, 0]
    out = {"pred_label": np.array([1, 1, 1, 1])}  # padding row would be wrong if counted
    res = metrics.score_task(task, [out], [b])
    assert abs(res["accuracy"] - 2 / 3) < TOL and set(res) == {"accuracy", "macro_f1"}


def test_score_task_tagging_uses_first_subtokens():
    task = get_task("builtin/ner")
    names = task.label_names
    b = layout.empty(2, 6)
    b["example_weight"][:] = [1, 1]
    b["token_labels"][0] = [IGNORE, names.index("B-PER"), IGNORE, names.index("O"), IGNORE, IGNORE]
    b["token_labels"][1] = [IGNORE, names.index("B-LOC"), names.index("I-LOC"), IGNORE, IGNORE,
                            IGNORE]  # fmt: skip
    pred = np.zeros((2, 6), np.int64)
    pred[0, 1] = names.index("B-PER")  # right; sub-token position 2 predicts garbage, ignored
    pred[0, 2] = names.index("B-LOC")
    pred[1, 1] = names.index("B-LOC")  # LOC span cut short: wrong span
    res = metrics.score_task(task, [{"pred_tokens": pred}], [b])
    assert abs(res["span_f1"] - 0.5) < TOL  # 1 of 2 predicted, 1 of 2 gold
    assert abs(res["token_accuracy"] - 3 / 4) < TOL


def test_score_task_regression_and_lm():
    sim = get_task("builtin/similarity")
    b = layout.empty(3, 4)
    b["score"][:] = [1.0, 2.0, 3.0]
    b["example_weight"][:] = 1
    res = metrics.score_task(sim, [{"pred_score": np.array([1.0, 2.0, 3.5])}], [b])
    assert res["spearman"] == pytest.approx(1.0, abs=TOL)
    lm = get_task("builtin/corpus")
    outs = [{"nll_sum": 10.0, "token_count": 5}, {"nll_sum": 2.0, "token_count": 1}]
    assert metrics.score_task(lm, outs, [b, b])["perplexity"] == pytest.approx(math.exp(2.0))


def test_glue_average_averages_two_metric_tasks_first():
    results = {
        "cola": {"matthews": 0.5, "accuracy": 0.9},
        "mrpc": {"f1": 0.9, "accuracy": 0.8},
        "stsb": {"pearson": 0.8, "spearman": 0.6},
    }
    assert abs(metrics.glue_average(results) - (0.5 + 0.85 + 0.7) / 3) < TOL
    with pytest.raises(KeyError, match="builtin/ner"):
        metrics.glue_average({"builtin/ner": {"span_f1": 1.0}})
    assert metrics.glue_average({"builtin/ner": {"span_f1": 1.0}},
                                {"builtin/ner": ("span_f1",)}) == 1.0  # fmt: skip


def test_score_records_scores_prediction_lines_against_their_gold():
    from types import SimpleNamespace

    clf = SimpleNamespace(name="c", kind="classification", label_names=("neg", "pos"),
                          metrics=("accuracy", "macro_f1"))  # fmt: skip
    rows = [{"gold": "pos", "label": "pos"}, {"gold": "neg", "label": "pos"},
            {"gold": "neg", "label": "neg"}, {"gold": "pos", "label": "pos"}]  # fmt: skip
    got = metrics.score_records(clf, rows)
    assert got["accuracy"] == 0.75 and got["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    tag = SimpleNamespace(name="t", kind="tagging", label_names=("B-PER", "O"),
                          metrics=("span_f1", "token_accuracy"))  # fmt: skip
    # an untagged word (None) counts as O: the gold entity is missed, not a crash
    got = metrics.score_records(tag, [{"gold": ["B-PER", "O"], "tags": [None, "O"]},
                                      {"gold": ["B-PER"], "tags": ["B-PER"]}])  # fmt: skip
    assert got == {"span_f1": pytest.approx(2 / 3), "token_accuracy": pytest.approx(2 / 3)}
    with pytest.raises(ValueError, match="needs its gold"):
        metrics.score_records(clf, [{"label": "pos"}])
