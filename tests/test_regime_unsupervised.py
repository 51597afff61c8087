"""Unsupervised pretraining then adaptation: the launch contract, MLM lowers dev perplexity, the
adapt stage starts from the pretrained encoder, and MLM masks come back identical on resume."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import xla_flags
from flax import nnx

from jaxtl import assembly, objectives, paths
from jaxtl import checkpoint as ckpt_lib
from jaxtl.configs import unsupervised_sequential as unsupervised_config
from jaxtl.data.batch import IGNORE
from jaxtl.data.masking import Masking
from jaxtl.data.prepare import corpus_blocks, prepare_tasks
from jaxtl.models import LM_KEY

REPO = pathlib.Path(__file__).resolve().parents[1]
PRETRAIN, ADAPT = 30, 6
OVERRIDES = {  # on configs/unsupervised_sequential.py:tiny
    "pretrain.steps": PRETRAIN,
    "pretrain.eval_every": 15,
    "pretrain.optim.lr": 3e-3,
    "train.steps": ADAPT,
    # Checkpoints at stage ends only, so step PRETRAIN's is kept (keep=2) for the tests to load.
    "checkpoint.every_steps": 0,
    "optim.lr": 1e-3,
    # Frozen encoder while adapting: its params at the end must be exactly stage 1's.
    "optim.strategy": "feature_extraction",
}


def _config(model_dir, **extra):
    c = unsupervised_config.get_config("tiny")
    c.model.name = str(model_dir)
    for k, v in {**OVERRIDES, **extra}.items():
        node = c
        *parents, leaf = k.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = v
    return c


@pytest.fixture(scope="module")
def launched(tiny_bert_dir, tmp_path_factory):
    wd = tmp_path_factory.mktemp("us") / "wd"
    cmd = [sys.executable, str(REPO / "launch.py"), "--regime=unsupervised_sequential",
           f"--workdir={wd}", f"--config={REPO / 'configs' / 'unsupervised_sequential.py'}:tiny",
           f"--config.model.name={tiny_bert_dir}"]  # fmt: skip
    cmd += [f"--config.{k}={v}" for k, v in OVERRIDES.items()]
    env = dict(os.environ, XLA_FLAGS=xla_flags(1))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    return wd, p.stdout


def _records(wd):
    return [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]


def test_launch_writes_contract_files_and_results(launched):
    wd, stdout = launched
    for f in ("config.json", "metrics.jsonl", "results.json", "plan.json"):
        assert (wd / f).is_file(), f
    results = json.loads((wd / "results.json").read_text())
    assert results["builtin/corpus"]["perplexity"] > 1.0
    assert 0.0 <= results["builtin/sentiment"]["accuracy"] <= 1.0
    phases = json.loads((wd / "plan.json").read_text())["phases"]
    assert [p["stage"] for p in phases] == ["pretrain", "adapt"]
    assert "lm_head_dropped" in json.dumps(phases[1])  # the LM head is frozen while adapting
    records = _records(wd)
    train = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train] == list(range(1, PRETRAIN + ADAPT + 1))
    assert {r["task"] for r in train[:PRETRAIN]} == {"builtin/corpus"}
    assert {r["task"] for r in train[PRETRAIN:]} == {"builtin/sentiment"}
    dev_ppl = [r for r in records if r["split"] == "dev" and r["task"] == "builtin/corpus"]
    assert [r["step"] for r in dev_ppl] == [15, 30] and all("perplexity" in r for r in dev_ppl)
    assert "builtin/corpus" in stdout and "perplexity" in stdout
    # The corpus's test split is scored once, with the pretraining stage's final params: held-out
    # text the dev perplexity never saw, so the two numbers differ.
    test = json.loads((wd / "results_test.json").read_text())
    assert 1.0 < test["builtin/corpus"]["perplexity"] < float("inf")
    assert test["builtin/corpus"]["perplexity"] != results["builtin/corpus"]["perplexity"]


def _initial_perplexity(config) -> float:
    """Dev perplexity of the loaded model before any training (same data, masks and head)."""
    from jaxtl import metrics

    lmm = assembly.load_lm_model(config)
    masking = Masking.for_tokenizer(lmm.tokenizer, lmm.encoder.tied_embedding().shape[0])
    td = corpus_blocks(
        config, lmm.tokenizer, "builtin/corpus", index=1, key=LM_KEY, objective="mlm",
        block_size=config.pretrain.block_size, masking=masking, seed=config.seed * 1000 + 999,
    )  # fmt: skip
    model = assembly.build_model(lmm.encoder, [], config, extra_heads={LM_KEY: lmm.head})
    graphdef, params = nnx.split(model, nnx.Param)
    predict = objectives.switch_predict([td])
    step = jax.jit(lambda p, b: predict(nnx.merge(graphdef, p), b))
    outs = [jax.device_get(step(params, b)) for b in td.eval_batches]
    return metrics.score_task(td.task, outs, td.eval_batches)["perplexity"]


def test_mlm_pretraining_lowers_dev_perplexity(launched, tiny_bert_dir):
    wd, _ = launched
    before = _initial_perplexity(_config(tiny_bert_dir))
    after = json.loads((wd / "results.json").read_text())["builtin/corpus"]["perplexity"]
    # A random tiny model starts near uniform over 30,522 ids; 30 steps must cut that clearly.
    assert before > 10_000
    assert after < 0.8 * before, (before, after)


def test_adapt_stage_starts_from_the_pretrained_encoder(launched, tiny_bert_dir):
    wd, _ = launched
    config = _config(tiny_bert_dir)
    lmm = assembly.load_lm_model(config)
    targets = prepare_tasks(config.target.tasks, config, lmm.tokenizer, with_train=False)
    model = assembly.build_model(lmm.encoder, targets, config, extra_heads={LM_KEY: lmm.head})
    start = paths.flatten(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    like = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    after_pretrain = paths.flatten(ckpt_lib.load_params(wd, like, step=PRETRAIN)[0])
    final = paths.flatten(ckpt_lib.load_params(wd, like, step=PRETRAIN + ADAPT)[0])

    def same(a, b, prefix):
        return all(np.array_equal(a[p], b[p]) for p in a if p.startswith(prefix))

    assert not same(start, after_pretrain, "encoder/")  # pretraining moved the encoder
    # Feature extraction freezes the encoder while adapting: the run ends with exactly the
    # encoder stage 1 produced, so stage 2 started from it (not from the HF weights).
    assert same(after_pretrain, final, "encoder/")
    assert same(after_pretrain, final, "heads/lm/")  # dropped LM head: untouched
    assert not same(after_pretrain, final, "heads/builtin_sentiment/")  # new head trained


def test_masked_batches_are_identical_after_restore(tiny_bert_dir):
    config = _config(tiny_bert_dir)
    lmm = assembly.load_lm_model(config)
    masking = Masking.for_tokenizer(lmm.tokenizer, lmm.encoder.tied_embedding().shape[0])

    def make():
        return corpus_blocks(
            config, lmm.tokenizer, "builtin/corpus", index=0, key=LM_KEY, objective="mlm", block_size=32,
            masking=masking, seed=7, with_eval=False,
        ).train_iter  # fmt: skip

    it = make()
    first = [next(it) for _ in range(3)]
    saved = it.state()
    later = [next(it) for _ in range(2)]
    again = make()
    again.restore(json.loads(json.dumps(saved)))  # checkpoints store the state as JSON
    for a, b in zip(later, [next(again) for _ in range(2)], strict=True):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # Masks are fresh per batch and follow BERT's rate on real, non-special tokens.
    b = first[0]
    chosen = b["token_labels"] != IGNORE
    real = (b["attention_mask"] > 0) & ~np.isin(b["input_ids"], masking.special_ids)
    rate = chosen.sum() / max((real | chosen).sum(), 1)
    assert 0.08 < rate < 0.25, rate
    assert not np.array_equal(
        first[0]["token_labels"] != IGNORE, first[1]["token_labels"] != IGNORE
    )
    masked = b["input_ids"][chosen] == masking.mask_id
    assert 0.6 < masked.mean() < 0.95  # ~80% of chosen tokens become [MASK]


def test_an_lm_corpus_dev_split_is_not_predicted_again_after_training(tmp_path):
    """After training, a corpus's test split is scored with the selected params, but its dev
    split (already scored in training, and an LM stream writes no prediction records) is not
    run through the model again: on WikiText that pass cost as long as scoring test."""
    from types import SimpleNamespace

    from jaxtl import run as run_lib
    from jaxtl.data.prepare import SplitData, TaskData
    from jaxtl.data.tasks import Task

    task = Task("corpus", "lm", lambda split: [], ("train", "dev", "test"),
                metrics=("perplexity",), main_metric="perplexity")  # fmt: skip
    splits = {s: SplitData(s, [], None, [{"split": s}], True, (8,)) for s in ("dev", "test")}
    td = TaskData(task, 0, "corpus", 1, None, splits["dev"].batches, "dev", splits)
    predicted = []

    def predict(stage, batches, params):
        predicted.append(batches[0]["split"])
        return [{"nll_sum": np.float32(2.0), "token_count": np.float32(1.0)}], batches

    trainer = SimpleNamespace(selected=lambda si, stage: ({}, {}), predict=predict)
    stage = SimpleNamespace(eval_sets={"corpus": SimpleNamespace(task=task)})
    from jaxtl import config as config_lib

    run = SimpleNamespace(all_tasks=[td], workdir=tmp_path, config=config_lib.base_config())
    test = run_lib.evaluate_selected(run, trainer, [stage])
    assert predicted == ["test"]
    assert test["corpus"]["perplexity"] == pytest.approx(np.exp(2.0))
    assert json.loads((tmp_path / "results_test.json").read_text())["corpus"] == test["corpus"]
