"""Extractive question answering (task kind ``qa``): SQuAD's files in, answer spans out.

Read from SQuAD's own JSON and from JSON lines (answers checked against their contexts), long
contexts cut into overlapping windows whose marks give back the answer's characters, trained
with transformers' start/end loss, decoded to the best span over a question's windows, scored
with SQuAD's exact match and F1, predicted from the command line and exported as a
``*ForQuestionAnswering`` model that transformers loads with the same logits."""

import json
import re
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from jaxtl import losses, metrics, predictions
from jaxtl.data import DataError, get_task, tokenize
from jaxtl.data import batch as layout
from jaxtl.data.batching import eval_batches, eval_order

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from conftest import minilm_dir

    from jaxtl.models import hf

    return hf.load_tokenizer(minilm_dir())


FACTS = [
    ("The Eiffel Tower stands in Paris. It was finished in 1889 for the World's Fair, and "
     "for forty-one years it was the tallest structure that people had built anywhere.",
     [("Where does the Eiffel Tower stand?", "Paris"), ("When was the tower finished?", "1889")]),
    ("Mount Everest is the highest mountain on Earth. Its summit rises 8,849 metres above "
     "sea level on the border between Nepal and China, in the Himalayas.",
     [("What is the highest mountain on Earth?", "Mount Everest"),
      ("How high is the summit?", "8,849 metres")]),
    ("The Amazon river flows east through Peru, Colombia and Brazil and empties into the "
     "Atlantic Ocean after a course of about 6,400 kilometres.",
     [("Into which ocean does the Amazon empty?", "Atlantic Ocean"),
      ("How long is the Amazon?", "about 6,400 kilometres")]),
]  # fmt: skip


def _squad_json(path, facts=FACTS, impossible=()):
    """SQuAD's nested layout (v2.0 with ``is_impossible`` questions)."""
    paragraphs = []
    for i, (context, qas) in enumerate(facts):
        items = [{"id": f"q{i}{j}", "question": q,
                  "answers": [{"text": a, "answer_start": context.index(a)}]}
                 for j, (q, a) in enumerate(qas)]  # fmt: skip
        items += [{"id": f"n{i}{j}", "question": q, "answers": [], "is_impossible": True}
                  for j, q in enumerate(impossible)]  # fmt: skip
        paragraphs.append({"context": context, "qas": items})
    path.write_text(
        json.dumps({"version": "v2.0", "data": [{"title": "t", "paragraphs": paragraphs}]})
    )


def _squad_jsonl(path, facts=FACTS, with_answers=True):
    """One question per line, as Hugging Face's ``squad`` dataset writes itself."""
    with path.open("w") as f:
        for i, (context, qas) in enumerate(facts):
            for j, (q, a) in enumerate(qas):
                rec = {"id": f"d{i}{j}", "question": q, "context": context}
                if with_answers:
                    rec["answers"] = {"text": [a], "answer_start": [context.index(a)]}
                f.write(json.dumps(rec) + "\n")


def test_squad_json_and_json_lines_read_alike_and_answers_are_checked(tmp_path):
    _squad_json(tmp_path / "train.json")
    _squad_jsonl(tmp_path / "dev.jsonl")
    spec = (f"file:name=sq,paths=train:{tmp_path}/train.json|dev:{tmp_path}/dev.jsonl,"
            "kind=qa")  # fmt: skip
    task = get_task(spec)
    assert (task.kind, task.metrics, task.main_metric) == ("qa", ("exact_match", "f1"), "f1")
    train, dev = task.load("train"), task.load("dev")
    assert [(ex.text, ex.label) for ex in train] == [(ex.text, ex.label) for ex in dev]
    assert train[0].label == ((27, "Paris"),) and train[0].id == "q00" and dev[0].id == "d00"
    # an answer list of objects, and one without answer_start (looked up in the context)
    rows = [{"question": "Where?", "context": "It is in Paris.", "answers": [{"text": "Paris"}]},
            {"question": "What?", "context": "A cat sat.", "answers": [
                {"text": "cat", "answer_start": 2}]}]  # fmt: skip
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = get_task(f"file:name=a,path={tmp_path}/a.jsonl,kind=qa").load("train")
    assert [ex.label for ex in got] == [((9, "Paris"),), ((2, "cat"),)]
    # an offset that does not point at its answer is named with its line
    rows[1]["answers"][0]["answer_start"] = 3
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"b.jsonl:2: answer 'cat' is not at character 3 of the "
                                        r"context \(found 'at '\)"):  # fmt: skip
        get_task(f"file:name=b,path={tmp_path}/b.jsonl,kind=qa").load("train")
    # SQuAD 2.0's unanswerable questions need null_answers=1, and are then read with no answer
    _squad_json(tmp_path / "v2.json", impossible=["Who painted it?"])
    with pytest.raises(DataError, match=r"v2.json: data\[0\].paragraphs\[0\].qas\[2\]: the "
                                        r"question has no answer; set null_answers=1"):  # fmt: skip
        get_task(f"file:name=v,path={tmp_path}/v2.json,kind=qa").load("train")
    v2 = get_task(f"file:name=v,path={tmp_path}/v2.json,kind=qa,null_answers=1")
    assert v2.null_answers and [ex.label for ex in v2.load("train")][2] == ()
    with pytest.raises(ValueError, match=r"kind=qa reads SQuAD's JSON or JSON lines \(.json, "
                                         r"\.jsonl\), not a \.tsv file"):  # fmt: skip
        get_task(f"file:name=t,path={tmp_path}/{{split}}.tsv,kind=qa")
    # a misspelt field is named with the closest one; a file without answers is unlabelled
    with pytest.raises(DataError, match=r"missing field 'questoin' \(did you mean 'question'"):
        get_task(f"file:name=a,path={tmp_path}/a.jsonl,kind=qa,question=questoin").load("train")
    _squad_jsonl(tmp_path / "test.jsonl", with_answers=False)
    paths = f"train:{tmp_path}/train.json|test:{tmp_path}/test.jsonl"
    unl = get_task(f"file:name=u,paths={paths},kind=qa").load("test")
    assert len(unl) == 6 and all(ex.label is None for ex in unl)
    with pytest.raises(DataError, match="the train split needs answers"):
        get_task(f"file:name=u,path={tmp_path}/test.jsonl,kind=qa").load("train")


def test_long_contexts_are_windows_whose_marks_give_back_the_answer(tmp_path, minilm_tokenizer):
    _squad_json(tmp_path / "train.json")
    task = get_task(f"file:name=sq,path={tmp_path}/train.json,kind=qa")
    examples = task.load("train")
    enc = tokenize.encode(task, examples, minilm_tokenizer, max_length=32, doc_stride=8)
    assert len(enc) > len(examples)  # contexts of ~35 tokens do not fit 32 with the question
    assert sorted(set(enc.example_of.tolist())) == list(range(len(examples)))
    found = {i: [] for i in range(len(examples))}
    for f in range(len(enc)):
        i, lab, spans = int(enc.example_of[f]), enc.token_labels[f], enc.char_spans[f]
        assert len(lab) <= 32 and lab[0] != layout.IGNORE  # [CLS] stands for "no answer"
        starts = np.flatnonzero((lab != layout.IGNORE) & (lab % 2 == 1))
        ends = np.flatnonzero((lab != layout.IGNORE) & (lab >= 2))
        assert len(starts) == len(ends) == 1
        s, e = int(starts[0]), int(ends[0])
        ctx = examples[i].text_pair
        if s > 0:
            found[i].append(ctx[spans[s][0] : spans[e][1]])
        # every context token is a place an answer may take, nothing else but [CLS]
        assert np.array_equal((lab != layout.IGNORE)[1:], (spans[:, 0] >= 0)[1:])
    assert all(found[i] and set(found[i]) == {examples[i].label[0][1]} for i in found), found
    with pytest.raises(DataError, match=r"train.json: data\[0\]\.paragraphs\[0\]\.qas\[0\]: the "
                                        r"question's 9 tokens leave no room"):  # fmt: skip
        tokenize.encode(task, examples, minilm_tokenizer, max_length=16, doc_stride=6)


def _qa_batch(valid, start, end, weight):
    lab = np.where(valid, 0, layout.IGNORE).astype(np.int32)
    for r, (s, e) in enumerate(zip(start, end)):
        lab[r, s] += tokenize.QA_START
        lab[r, e] += tokenize.QA_END
    return {"token_labels": jnp.asarray(lab), "example_weight": jnp.asarray(weight, jnp.float32)}


def test_loss_is_the_mean_of_start_and_end_cross_entropies_over_answer_positions():
    rng = np.random.default_rng(0)
    b, t = 3, 10
    valid = rng.random((b, t)) < 0.7
    valid[:, 0] = True
    start = np.array([0, 3, 5])
    end = np.array([0, 4, 5])
    valid[np.arange(b), start] = valid[np.arange(b), end] = True
    logits = rng.normal(size=(b, t, 2)).astype(np.float32)
    weight = [1.0, 1.0, 0.0]  # a padding row counts for nothing
    total, den = losses.qa(jnp.asarray(logits), _qa_batch(valid, start, end, weight))

    def nll(x, mask, gold):
        x = np.where(mask, x, -np.inf)
        return -(x[gold] - np.log(np.exp(x - x.max()).sum()) - x.max())

    want = sum(0.5 * (nll(logits[r, :, 0], valid[r], start[r]) +
                      nll(logits[r, :, 1], valid[r], end[r])) for r in range(2))  # fmt: skip
    assert float(den) == 2.0
    np.testing.assert_allclose(float(total), want, rtol=1e-5)


def test_best_span_is_the_brute_force_best_within_the_length_limit():
    rng = np.random.default_rng(1)
    b, t = 4, 48
    valid = rng.random((b, t)) < 0.8
    valid[:, 0] = True
    logits = rng.normal(size=(b, t, 2)).astype(np.float32)
    longest = 12
    logits[0, 5, 0], logits[0, 5 + longest, 1] = 50.0, 50.0  # one token too long a span
    valid[0, 5] = valid[0, 5 + longest] = True
    batch = _qa_batch(valid, [0] * b, [0] * b, [1.0] * b)
    span, score = map(np.asarray, losses.best_spans(jnp.asarray(logits), batch, longest))
    for r in range(b):
        ok = [i for i in range(1, t) if valid[r, i]]
        best = max((logits[r, i, 0] + logits[r, j, 1], i, j) for i in ok for j in ok
                   if 0 <= j - i < longest)  # fmt: skip
        assert tuple(span[r]) == best[1:]
        np.testing.assert_allclose(score[r], [best[0], logits[r, 0].sum()], rtol=1e-6)


def test_packed_windows_give_each_its_unpacked_logits_loss_spans_and_answers(
    tmp_path, minilm_tokenizer
):
    """Several windows to a row (data.packing): each window's start/end logits, the loss (its
    softmax over the window's own positions), its best span and "no answer" score and so every
    record equal the unpacked ones (1e-5, fp32 summation order only)."""
    import jax
    from flax import nnx
    from test_packing import TOL, _logits, _model, _per_example

    from jaxtl import step as step_lib
    from jaxtl.data import packing
    from jaxtl.data.prepare import TaskData
    from jaxtl.objectives import switch_loss, switch_predict

    _squad_json(tmp_path / "train.json", impossible=("Who built it?",))
    task = get_task(f"file:name=sq,path={tmp_path}/train.json,kind=qa,null_answers=1")
    examples = task.load("train")
    enc = tokenize.encode(task, examples, minilm_tokenizer, max_length=48, doc_stride=8)
    assert len(enc) > len(examples)  # some contexts take two windows
    buckets = (48, 96)  # rows of 96 tokens: two windows each
    flat = eval_batches(enc, batch_size=4, buckets=buckets)
    packed = packing.eval_batches(enc, batch_size=4, buckets=buckets)
    assert max(int((b["example_weight"] > 0).sum(1).max()) for b in packed) >= 2
    model = _model("bert", task)
    a = _per_example(flat, [_logits(model, b) for b in flat], enc, True, buckets)
    b = _per_example(packed, [_logits(model, b) for b in packed], enc, True, buckets)
    assert sorted(a) == sorted(b) == list(range(len(enc)))
    assert max(float(np.max(np.abs(a[i] - b[i]))) for i in a) <= TOL
    td = TaskData(task, 0, "t", len(enc), None, [], "train")
    loss, rngs = switch_loss([td]), nnx.Rngs(dropout=0)
    sums = [
        [loss(model, jax.tree.map(jnp.asarray, x), rngs, False) for x in bs]
        for bs in (flat, packed)
    ]
    (la, da), (lb, db) = [
        (sum(float(s) for s, _ in xs), sum(float(m["denominator"]) for _, m in xs)) for xs in sums
    ]
    assert da == db == len(enc) and lb == pytest.approx(la, rel=TOL)
    graphdef, params = nnx.split(model, nnx.Param)
    predict = step_lib.make_eval_step(graphdef, switch_predict([td]))
    got = []
    for batches in (flat, packed):
        outs = [jax.tree.map(np.asarray, predict(params, x)) for x in batches]
        got.append(predictions.records(task, examples, enc, buckets, outs, batches, labelled=True))
    (ra, rb) = got
    assert [r["answer"] for r in ra] == [r["answer"] for r in rb]
    assert [r["answer_start"] for r in ra] == [r["answer_start"] for r in rb]
    for key in ("score", "null_score"):
        np.testing.assert_allclose([r[key] for r in rb], [r[key] for r in ra], atol=TOL, rtol=0)


def test_squad_metrics_are_the_official_scripts():
    # SQuAD's normalisation: case, punctuation and articles do not count
    assert metrics.normalize_answer("The  U.S. Army!") == "us army"
    gold = [["Paris", "the city of Paris"], ["1889"], [], ["Mount Everest"]]
    pred = ["paris.", "in 1889", "", "Everest"]
    assert metrics.exact_match(gold, pred) == pytest.approx((1 + 0 + 1 + 0) / 4)
    # F1: best over the gold answers; "in 1889" 2/3; the empty answer right for no answer
    assert metrics.squad_f1(gold, pred) == pytest.approx((1 + 2 / 3 + 1 + 2 / 3) / 4)
    # SQuAD 2.0's breakdown: the answerable questions alone, and the unanswerable ones
    assert metrics.has_answer_exact(gold, pred) == pytest.approx(1 / 3)
    assert metrics.has_answer_f1(gold, pred) == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert metrics.no_answer_exact(gold, pred) == 1.0
    task = get_task("file:name=v,path=/none/v2.json,kind=qa,null_answers=1")  # not read
    assert task.metrics == ("exact_match", "f1", "has_answer_exact", "has_answer_f1",
                            "no_answer_exact")  # fmt: skip
    recs = [{"gold": g, "answer": p} for g, p in zip(gold, pred)]
    assert metrics.score_records(task, recs)["no_answer_exact"] == 1.0
    # a split without unanswerable questions has no NoAns score (as SQuAD's script reports)
    assert set(metrics.score_records(task, recs[:2])) == {"exact_match", "f1", "has_answer_exact",
                                                          "has_answer_f1"}  # fmt: skip
    tm = pytest.importorskip("torchmetrics.functional.text")  # an independent implementation
    answerable = [i for i, g in enumerate(gold) if g]
    ref = tm.squad(
        [{"prediction_text": pred[i], "id": str(i)} for i in answerable],
        [{"answers": {"answer_start": [0] * len(gold[i]), "text": gold[i]}, "id": str(i)}
         for i in answerable],
    )  # fmt: skip
    sub_gold, sub_pred = [gold[i] for i in answerable], [pred[i] for i in answerable]
    assert metrics.exact_match(sub_gold, sub_pred) * 100 == pytest.approx(float(ref["exact_match"]))
    assert metrics.squad_f1(sub_gold, sub_pred) * 100 == pytest.approx(float(ref["f1"]))


def test_an_answer_is_the_best_span_of_any_window_or_none_where_allowed(tmp_path, minilm_tokenizer):
    """Records decode over windows: the best-scoring window's span, mapped to the context's
    characters; with null_answers, "" when every window's "no answer" beats it."""
    _squad_json(tmp_path / "train.json")
    task = get_task(f"file:name=sq,path={tmp_path}/train.json,kind=qa")
    examples = task.load("train")[:1]
    enc = tokenize.encode(task, examples, minilm_tokenizer, max_length=32, doc_stride=8)
    assert len(enc) >= 2
    batches = eval_batches(enc, batch_size=4, buckets=(32,))
    lab = np.asarray(batches[0]["token_labels"])
    spans = np.zeros((4, 2), np.int32)
    scores = np.full((4, 2), [-1.0, 0.0], np.float32)
    order = eval_order(enc, buckets=(32,))
    gold_window = next(r for r, f in enumerate(order) if (lab[r][1:] % 2 == 1).any())
    s = int(np.flatnonzero((lab[gold_window] != layout.IGNORE) & (lab[gold_window] % 2 == 1))[0])
    e = int(np.flatnonzero((lab[gold_window] != layout.IGNORE) & (lab[gold_window] >= 2))[0])
    spans[gold_window], scores[gold_window] = (s, e), (2.0, 1.0)
    outputs = [{"pred_span": spans, "pred_span_score": scores, **{
        k: np.zeros((4,)) for k in ("pred_label", "pred_score")}}]  # fmt: skip
    rec = predictions.records(task, examples, enc, (32,), outputs, batches, labelled=True)
    assert rec[0]["answer"] == "Paris" and rec[0]["answer_start"] == 27 and rec[0]["score"] == 2.0
    assert rec[0]["gold"] == ["Paris"] and rec[0]["id"] == "q00"
    import dataclasses

    nullable = dataclasses.replace(task, null_answers=True)
    assert predictions.records(nullable, examples, enc, (32,), outputs, batches,
                               labelled=True)[0]["answer"] == "Paris"  # fmt: skip
    scores[:, 1] = 3.0  # "no answer" beats the span in every window
    rec = predictions.records(nullable, examples, enc, (32,), outputs, batches, labelled=True)
    assert (rec[0]["answer"], rec[0]["answer_start"]) == ("", None)
    # ... unless by no more than the threshold (data.null_score_threshold)
    lenient = dataclasses.replace(nullable, null_threshold=1.5)
    assert predictions.records(lenient, examples, enc, (32,), outputs, batches,
                               labelled=True)[0]["answer"] == "Paris"  # fmt: skip
    assert predictions.records(task, examples, enc, (32,), outputs, batches,
                               labelled=True)[0]["answer"] == "Paris"  # fmt: skip


def _launch(*args, cwd=REPO):
    p = subprocess.run([sys.executable, str(REPO / "launch.py"), *args], cwd=cwd,
                       capture_output=True, text=True, timeout=900)  # fmt: skip
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return p


def test_own_squad_files_train_predict_and_export_to_transformers(tiny_bert_dir, tmp_path):
    """From the command line: SQuAD JSON to train, JSON lines to select on (contexts longer
    than a row: windows), results.json with SQuAD's metrics equal to what --predict scores on
    the dev file; the export loads in transformers' AutoModelForQuestionAnswering, whose
    logits give the best span and score of jaxtl's records (within 1e-4)."""
    _squad_json(tmp_path / "train.json")
    _squad_jsonl(tmp_path / "dev.jsonl")
    spec = f"file:name=sq,paths=train:{tmp_path}/train.json|dev:{tmp_path}/dev.jsonl,kind=qa"
    wd, out = tmp_path / "run", tmp_path / "export"
    _launch("--regime=multitask", "--config=configs/multitask.py:tiny",
            f"--config.model.name={tiny_bert_dir}", f"--config.tasks.names={(spec,)!r}",
            "--config.train.steps=30", "--config.train.eval_every=15",
            "--config.data.max_length=32", "--config.data.buckets=(32,)",
            "--config.data.doc_stride=8", f"--config.export_dir={out}",
            f"--workdir={wd}")  # fmt: skip
    dev = json.loads((wd / "results.json").read_text())["sq"]
    assert set(dev) == {"exact_match", "f1"} and 0.0 <= dev["exact_match"] <= dev["f1"] <= 1.0
    recs = [json.loads(x) for x in (wd / "predictions/sq/dev.jsonl").read_text().splitlines()]
    assert [r["id"] for r in recs] == ["d00", "d01", "d10", "d11", "d20", "d21"]
    for r in recs:  # each answer is the context's own text at its offset
        assert (
            r["text_pair"][r["answer_start"] : r["answer_start"] + len(r["answer"])]
            == (r["answer"])
        )
    from jaxtl.predictor import predict_command

    n, scores = predict_command(
        str(wd), str(tmp_path / "dev.jsonl"), str(tmp_path / "p.jsonl"), "sq"
    )
    assert n == 6 and scores == pytest.approx(dev, abs=1e-9)
    again = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [(r["answer"], r["answer_start"]) for r in again] == [
        (r["answer"], r["answer_start"]) for r in recs
    ]
    # SQuAD's own prediction file (its evaluation scripts read it): question id -> answer
    n, _ = predict_command(str(wd), str(tmp_path / "dev.jsonl"), str(tmp_path / "p.json"), "sq",
                           output_format="squad")  # fmt: skip
    assert n == 6
    assert json.loads((tmp_path / "p.json").read_text()) == {r["id"]: r["answer"] for r in recs}
    assert list(json.loads((tmp_path / "p.json").read_text())) == [f"d{i}{j}" for i in range(3)
                                                                   for j in range(2)]  # fmt: skip
    # the same questions in tables: a CSV with one answer's text a row (scored the same), a
    # Parquet file of other column names with SQuAD's answers (--text_column and
    # --text_pair_column), a TSV without answers (predicted only)
    import pandas as pd

    rows = [json.loads(x) for x in (tmp_path / "dev.jsonl").read_text().splitlines()]
    frame = pd.DataFrame({"id": [r["id"] for r in rows], "question": [r["question"] for r in rows],
                          "context": [r["context"] for r in rows]})  # fmt: skip
    frame.assign(answer=[r["answers"]["text"][0] for r in rows]).to_csv(
        tmp_path / "q.csv", index=False)  # fmt: skip
    frame.rename(columns={"question": "q", "context": "passage"}).assign(
        answers=[r["answers"] for r in rows]).to_parquet(tmp_path / "q.parquet")  # fmt: skip
    frame.to_csv(tmp_path / "q.tsv", sep="\t", index=False)
    (tmp_path / "q.dat").write_text((tmp_path / "q.csv").read_text())  # by --input_format
    for name, columns in (("q.csv", (None, None)), ("q.parquet", ("q", "passage")),
                          ("q.tsv", (None, None)), ("q.dat", (None, None))):  # fmt: skip
        n, got = predict_command(str(wd), str(tmp_path / name), str(tmp_path / "t.jsonl"), "sq",
                                 input_format="csv" if name == "q.dat" else "auto",
                                 columns=columns)  # fmt: skip
        assert n == 6 and got == (None if name == "q.tsv" else pytest.approx(dev, abs=1e-9))
        table = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
        assert [(r["id"], r["answer"], r["answer_start"]) for r in table] == [
            (r["id"], r["answer"], r["answer_start"]) for r in again
        ], name
    with pytest.raises(DataError, match=re.escape(
            "no column 'question' in header ['id', 'q', 'passage', 'answers'] (task 'sq' is "
            "qa: --text_column names the question column")):  # fmt: skip
        predict_command(str(wd), str(tmp_path / "q.parquet"), str(tmp_path / "t.jsonl"), "sq")
    # lines are question<TAB>context; a question alone stops before the model runs, named
    p = subprocess.run([sys.executable, str(REPO / "launch.py"), "--predict", f"--workdir={wd}",
                        "--input=-", "--input_format=lines", f"--output={tmp_path / 'x.jsonl'}"],
                       input="Where is it?\tIt is in Paris.\nWhere?\n", capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert p.returncode != 0 and "<stdin>:2: task 'sq' answers a question from its context" in (
        p.stderr
    ), p.stderr[-2000:]
    # a context without its question would still get an answer: it stops too, named
    with pytest.raises(DataError, match=r"x.jsonl:2: task 'sq' answers a question from its "
                       r"context; this input has no question"):  # fmt: skip
        (tmp_path / "x.jsonl").write_text(
            '{"question": "Where?", "context": "In Paris."}\n{"context": "In Rome."}\n'
        )
        predict_command(str(wd), str(tmp_path / "x.jsonl"), str(tmp_path / "y.jsonl"), "sq",
                        input_format="jsonl")  # fmt: skip
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    cfg = json.loads((out / "sq/config.json").read_text())
    assert cfg["architectures"] == ["BertForQuestionAnswering"]
    model = transformers.AutoModelForQuestionAnswering.from_pretrained(str(out / "sq")).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(out / "sq"))
    question, context = "Where is it?", "It is in Paris."  # one window
    import jaxtl

    loaded = jaxtl.load(wd)
    ours = loaded.predict([{"question": question, "context": context}], task="sq")[0]
    with pytest.raises(DataError, match=r"input:1: task 'sq' .* this input has no question"):
        loaded.predict([{"question": " ", "context": context}], task="sq")
    enc = tok(question, context, return_tensors="pt")
    with torch.no_grad():
        got = model(**enc)
    s, e = got.start_logits[0].numpy(), got.end_logits[0].numpy()
    ctx = [i for i, x in enumerate(enc.sequence_ids(0)) if x == 1]
    best = max((s[i] + e[j], i, j) for i in ctx for j in ctx if 0 <= j - i < 30)
    offsets = tok(question, context, return_offsets_mapping=True)["offset_mapping"]
    assert ours["answer"] == context[offsets[best[1]][0] : offsets[best[2]][1]]
    np.testing.assert_allclose(ours["score"], best[0], rtol=0, atol=1e-4)


def test_a_lora_qa_run_exports_a_peft_adapter_with_the_merged_models_logits(
    tiny_bert_dir, tmp_path
):
    """optim.strategy=lora: the adapter (task type QUESTION_ANS, qa_outputs saved) over the
    base checkpoint computes the merged export's logits (within 1e-5) when its wrapped model is
    called, as its model card says (peft's QA forward drops token_type_ids)."""
    _squad_json(tmp_path / "train.json")
    spec = f"file:name=sq,path={tmp_path}/train.json,kind=qa"
    out = tmp_path / "export"
    _launch("--regime=multitask", "--config=configs/multitask.py:tiny",
            f"--config.model.name={tiny_bert_dir}", f"--config.tasks.names={(spec,)!r}",
            "--config.optim.strategy=lora", "--config.optim.lr=1e-2", "--config.train.steps=10",
            "--config.train.eval_every=0", "--config.data.max_length=32",
            "--config.data.buckets=(32,)", f"--config.export_dir={out}",
            f"--workdir={tmp_path / 'run'}")  # fmt: skip
    cfg = json.loads((out / "sq/adapter/adapter_config.json").read_text())
    assert (cfg["task_type"], cfg["modules_to_save"]) == ("QUESTION_ANS", ["qa_outputs"])
    assert "get_base_model()" in (out / "sq/adapter/README.md").read_text()
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    base = transformers.AutoModelForQuestionAnswering.from_pretrained(str(tiny_bert_dir))
    adapted = peft.PeftModel.from_pretrained(base, str(out / "sq/adapter")).eval()
    merged = transformers.AutoModelForQuestionAnswering.from_pretrained(str(out / "sq")).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(out / "sq"))
    enc = tok("Where is it?", "It is in Paris.", return_tensors="pt")
    with torch.no_grad():
        got, want = adapted.get_base_model()(**enc), merged(**enc)
    for key in ("start_logits", "end_logits"):
        np.testing.assert_allclose(getattr(got, key).numpy(), getattr(want, key).numpy(),
                                   rtol=0, atol=1e-5)  # fmt: skip


def test_a_hugging_face_squad_layout_reads_as_the_files_do(tmp_path):
    """hf: with kind=qa over a DatasetDict saved to disk and a Parquet file, laid out as
    Hugging Face's squad (answers {"text", "answer_start"}): the same examples as the JSON
    lines file, the same checks, and a split without answers unlabelled."""
    datasets = pytest.importorskip("datasets")
    _squad_jsonl(tmp_path / "dev.jsonl")
    rows = [json.loads(x) for x in (tmp_path / "dev.jsonl").read_text().splitlines()]
    want = [(ex.text, ex.text_pair, ex.label, ex.id) for ex in
            get_task(f"file:name=f,path={tmp_path}/dev.jsonl,kind=qa").load("train")]  # fmt: skip
    unlabelled = [{k: v for k, v in r.items() if k != "answers"} for r in rows]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows),
                          "test": datasets.Dataset.from_list(unlabelled)}
                         ).save_to_disk(str(tmp_path / "saved"))  # fmt: skip
    task = get_task(f"hf:name=h,path={tmp_path}/saved,kind=qa")
    assert task.kind == "qa" and task.splits == ("train", "test")
    assert [(ex.text, ex.text_pair, ex.label, ex.id) for ex in task.load("train")] == want
    assert all(ex.label is None for ex in task.load("test"))
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "train.parquet"))
    pq = get_task(f"hf:name=h,path={tmp_path}/train.parquet,kind=qa")
    assert [(ex.text, ex.label) for ex in pq.load("train")] == [(w[0], w[2]) for w in want]
    with pytest.raises(DataError, match=r"no column 'answer' \(did you mean 'answers'\?\)"):
        get_task(f"hf:name=h,path={tmp_path}/train.parquet,kind=qa,answers=answer").load("train")
    rows[0]["answers"]["answer_start"] = [0]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "bad.parquet"))
    with pytest.raises(DataError, match=r"bad.parquet:0: answer 'Paris' is not at character 0"):
        get_task(f"hf:name=h,path={tmp_path}/bad.parquet,kind=qa").load("train")


def test_a_frozen_encoders_cached_token_features_give_the_qa_heads_logits(tiny_bert_dir, tmp_path):
    """optim.strategy=feature_extraction: a qa task's windows are cached token by token, and the
    head's start/end logits and the loss from the cache equal those from the encoder (1e-5)."""
    import jax
    from flax import nnx
    from test_features import TOL, config, head_logits, stage_of

    _squad_json(tmp_path / "train.json")
    _squad_jsonl(tmp_path / "dev.jsonl")
    spec = f"file:name=sq,paths=train:{tmp_path}/train.json|dev:{tmp_path}/dev.jsonl,kind=qa"
    cfg = config(tiny_bert_dir, **{"tasks.names": (spec,), "data.max_length": 32,
                                   "data.buckets": (32,), "data.doc_stride": 8})  # fmt: skip
    r, stage = stage_of(cfg, tmp_path)
    graphdef, state = nnx.split(r.model, nnx.Param)
    stage.features.prepare(graphdef, nnx.to_pure_dict(state), tmp_path)
    (td,) = r.tasks
    assert stage.features.stores[td.index].tokens
    key = jax.random.key(3)
    for b in [td.eval_batches[0], next(td.train_iter)]:
        cb = stage.features.attach(b)
        real = np.asarray(b["attention_mask"]) > 0
        got, want = head_logits(r.model, td, cb), head_logits(r.model, td, b)
        np.testing.assert_allclose(got[real], want[real], atol=TOL, rtol=0)
        lc, _ = stage.loss_fn(r.model, jax.tree.map(jnp.asarray, cb), nnx.Rngs(dropout=key), True)
        lu, _ = stage.loss_fn(r.model, jax.tree.map(jnp.asarray, b), nnx.Rngs(dropout=key), True)
        np.testing.assert_allclose(float(lc), float(lu), atol=TOL, rtol=TOL)


def test_the_longest_answer_is_a_config_key(tmp_path):
    from jaxtl import config as config_lib
    from jaxtl.data.prepare import configured

    _squad_json(tmp_path / "train.json")
    task = get_task(f"file:name=sq,path={tmp_path}/train.json,kind=qa")
    c = config_lib.base_config()
    assert configured(task, c).max_answer_tokens == 30  # run_qa's default
    c.data.max_answer_length, c.data.null_score_threshold = 4, -1.5
    assert configured(task, c).max_answer_tokens == 4
    assert configured(task, c).null_threshold == -1.5
    c.data.max_answer_length = 0
    with pytest.raises(ValueError, match="data.max_answer_length=0: must be 1 or more tokens"):
        configured(task, c)


@pytest.mark.parametrize("stride", [2, 14])
def test_the_training_windows_overlap_by_data_doc_stride(tmp_path, minilm_tokenizer, stride):
    """The train split is cut as data.doc_stride says (it is tokenised in memory, not through
    the token cache, whose entries are keyed without it)."""
    from jaxtl import config as config_lib
    from jaxtl.data.prepare import prepare_tasks

    _squad_json(tmp_path / "train.json")
    _squad_jsonl(tmp_path / "dev.jsonl")
    spec = f"file:name=sq,paths=train:{tmp_path}/train.json|dev:{tmp_path}/dev.jsonl,kind=qa"
    c = config_lib.base_config()
    c.data.max_length, c.data.buckets, c.data.doc_stride = 32, (32,), stride
    c.data.token_cache = str(tmp_path / "cache")
    c.data.token_cache_min_rows = 1
    (td,) = prepare_tasks([spec], c, minilm_tokenizer)
    task = get_task(spec)
    want = tokenize.encode(task, task.load("train"), minilm_tokenizer, max_length=32,
                           doc_stride=stride)  # fmt: skip
    assert td.train_size == len(want)
    assert [list(x) for x in td.train_iter.encoded.input_ids] == [list(x) for x in want.input_ids]
    assert not (tmp_path / "cache").exists()


@pytest.mark.slow  # MiniLM fine-tuned for 150 steps (~2 min; dev F1 0.87 when written)
def test_minilm_learns_to_answer_questions_about_real_sentences(data_dir, tmp_path):
    """Real text, held-out questions: "Which person / organisation / place is named?" about
    CoNLL-2003 sentences (every entity of the type a gold answer), trained on train sentences
    and scored on dev ones. A model that had not learnt the task scores near 0 (a random span);
    the full experiment (EXPERIMENTS.md) reaches about 88 dev F1 in 200 steps."""
    sys.path.insert(0, str(REPO / "experiments"))
    from qa_feature_based import entity_questions

    spec = entity_questions(str(data_dir), 800, tmp_path / "data")
    wd = tmp_path / "run"
    _launch("--regime=multitask", "--config=configs/multitask.py", f"--config.tasks.names={(spec,)!r}",
            "--config.train.steps=150", "--config.train.eval_every=0", "--config.optim.lr=5e-5",
            "--config.train.batch_size=16", "--config.data.max_length=64",
            "--config.data.buckets=(32,64)", "--config.data.max_eval_examples=300",
            "--config.checkpoint.every_steps=0", f"--workdir={wd}")  # fmt: skip
    dev = json.loads((wd / "results.json").read_text())["entq"]
    assert dev["f1"] > 0.6 and dev["exact_match"] > 0.5, dev


def test_squads_prediction_file_takes_qa_answers_only_each_id_once(tmp_path):
    """--output_format=squad: refused for another kind before any model runs; a record
    without an answer, or an id seen before, stops instead of writing a wrong file."""
    from jaxtl.data.tasks import Task

    with pytest.raises(ValueError, match=r"--output_format=squad writes a qa task's answers .*"
                       r"task 'sst' is regression"):  # fmt: skip
        predictions.check_format(Task("sst", "regression", loader=None), "squad")
    predictions.check_format(Task("sq", "qa", loader=None), "squad")
    with pytest.raises(ValueError, match=r"id 'q1' appears twice"):
        with predictions.open_writer(tmp_path / "p.json", "squad") as w:
            w.write({"id": "q1", "answer": "Paris"})
            w.write({"id": "q1", "answer": ""})
    assert not (tmp_path / "p.json").exists()  # nothing half-written
    with pytest.raises(ValueError, match="this record has none"):
        with predictions.open_writer(tmp_path / "p.json", "squad") as w:
            w.write({"id": 0, "label": "pos"})


def test_a_qa_records_gold_answers_are_a_json_list_in_a_table():
    """Answers may hold commas and spaces, so a table cell cannot join them as labels are."""
    rec = {"id": "q1", "text": "How high?", "text_pair": "It is 8,849 metres high.",
           "gold": ["8,849 metres", "8,849 metres high"], "answer": "8,849 metres",
           "answer_start": 6, "score": 3.5}  # fmt: skip
    row = predictions.table_cells(rec, ())
    assert json.loads(row["gold"]) == rec["gold"]
    assert {k: v for k, v in row.items() if k != "gold"} == {
        k: v for k, v in rec.items() if k != "gold"
    }


def _f1_at(t, margins, f1_span, f1_null):
    """Mean F1 with "no answer" where the margin exceeds ``t``."""
    return np.where(margins > t, f1_null, f1_span).mean()


def test_the_null_threshold_tuned_is_the_best_on_dev_by_brute_force():
    from jaxtl import thresholds

    rng = np.random.default_rng(4)
    for _ in range(20):
        n = int(rng.integers(1, 30))
        margins = np.round(rng.normal(size=n), 1)  # ties among margins too
        f1_span, f1_null = rng.random(n), (rng.random(n) < 0.4).astype(float)
        default = float(rng.normal())
        scored = (margins, f1_span, f1_null)
        candidates = [default, margins.min() - 1, *margins, margins.max() + 1]
        best = max(_f1_at(t, *scored) for t in candidates)
        cut = thresholds.tune_null(margins, f1_span, f1_null, default)
        assert _f1_at(cut, *scored) == pytest.approx(best, abs=1e-12)
        if _f1_at(default, *scored) == pytest.approx(best, abs=1e-12):
            assert cut == default  # the configured threshold stays when it is as good
    task = get_task("file:name=v,path=/none/v2.json,kind=qa,null_answers=1")  # not read
    assert thresholds.apply(task, {"null": -1.25}).null_threshold == -1.25


def test_tuned_null_threshold_decides_the_runs_records_and_predict(tiny_bert_dir, tmp_path):
    """train.tune_thresholds with null_answers: thresholds.json holds the "no answer"
    threshold chosen on dev, results.json the dev scores it gives, and --predict on the dev
    file applies it (the same scores)."""
    facts = [(c, qas + [("Who painted the ceiling?", None)]) for c, qas in FACTS]
    with (tmp_path / "all.jsonl").open("w") as f:
        for i, (context, qas) in enumerate(facts):
            for j, (q, a) in enumerate(qas):
                ans = {"text": [a], "answer_start": [context.index(a)]} if a else {
                    "text": [], "answer_start": []}  # fmt: skip
                f.write(json.dumps({"id": f"x{i}{j}", "question": q, "context": context,
                                    "answers": ans}) + "\n")  # fmt: skip
    spec = (f"file:name=sq,paths=train:{tmp_path}/all.jsonl|dev:{tmp_path}/all.jsonl,"
            "kind=qa,null_answers=1")  # fmt: skip
    wd = tmp_path / "run"
    _launch("--regime=multitask", "--config=configs/multitask.py:tiny",
            f"--config.model.name={tiny_bert_dir}", f"--config.tasks.names={(spec,)!r}",
            "--config.train.steps=8", "--config.train.eval_every=0",
            "--config.data.max_length=64", "--config.data.buckets=(64,)",
            "--config.train.tune_thresholds=True", f"--workdir={wd}")  # fmt: skip
    tuned = json.loads((wd / "thresholds.json").read_text())["sq"]
    assert set(tuned["thresholds"]) == {"null"} and tuned["chosen_on"] == "dev"
    assert tuned["dev_after"]["f1"] >= tuned["dev_before"]["f1"]
    dev = json.loads((wd / "results.json").read_text())["sq"]
    assert dev == pytest.approx(tuned["dev_after"])
    recs = [json.loads(x) for x in (wd / "predictions/sq/dev.jsonl").read_text().splitlines()]
    cut = tuned["thresholds"]["null"]
    for r in recs:  # a span is given only where "no answer" does not beat it by the threshold
        assert not r["answer"] or r["null_score"] - r["score"] <= cut
    from jaxtl.predictor import predict_command

    n, scores = predict_command(str(wd), str(tmp_path / "all.jsonl"), str(tmp_path / "p.jsonl"),
                                "sq")  # fmt: skip
    assert n == len(recs) and scores == pytest.approx(dev, abs=1e-9)


def test_a_qa_table_streams_in_two_passes(tmp_path, monkeypatch):
    """--predict reads a qa table twice — whether every row has an answer, then the rows — and
    holds neither: without answers the first question comes before a later bad row is read;
    with them every question keeps its gold; Parquet comes a batch of rows at a time."""
    import pandas as pd
    from test_export import task

    from jaxtl import predictor as predictor_lib
    from jaxtl.data import io

    td = task("qa")
    reader = object.__new__(predictor_lib.Predictor)  # iter_input reads no run state for qa
    rows = [(f"q{i}", f"Who is {n}?", f"{n} lives in Paris.", n)
            for i, n in enumerate(["Ann", "Bob", "Cy", "Di", "Ed"])]  # fmt: skip
    plain = tmp_path / "plain.csv"
    plain.write_text("id,question,context\n" + "".join(f"{i},{q},{c}\n" for i, q, c, _ in rows)
                     + "q5,a question with no context\n")  # fmt: skip
    stream = reader.iter_input(str(plain), td)
    first = next(stream)
    assert (first.id, first.text, first.label) == ("q0", "Who is Ann?", None)
    with pytest.raises(DataError, match=r"plain\.csv:7"):
        list(stream)
    frame = pd.DataFrame(rows, columns=["id", "question", "context", "answer"])
    frame.to_csv(tmp_path / "gold.csv", index=False)
    frame.to_parquet(tmp_path / "gold.parquet")
    monkeypatch.setattr(io, "PARQUET_BATCH_ROWS", 2)
    batches = []
    import pyarrow.parquet as pq

    original = pq.ParquetFile.iter_batches

    def counted(self, *a, **kw):
        for b in original(self, *a, **kw):
            batches.append(b.num_rows)
            yield b

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", counted)
    for name in ("gold.csv", "gold.parquet"):
        got = list(reader.iter_input(str(tmp_path / name), td))
        want = [(i, q, ((0, a),)) for i, q, _, a in rows]  # (start, text): found in the context
        assert [(e.id, e.text, e.label) for e in got] == want, name
    assert batches == [2, 2, 1] * 2  # the Parquet file read twice, two rows at a time
