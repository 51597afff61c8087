"""Supervised sequential regime: source stage, then target stage on the same encoder."""

import json
import os
import pathlib
import subprocess
import sys

from conftest import xla_flags

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_source_then_target_run(tiny_bert_dir, tmp_path):
    wd = tmp_path / "wd"
    cmd = [
        sys.executable,
        str(REPO / "launch.py"),
        "--regime=supervised_sequential",
        f"--workdir={wd}",
        f"--config={REPO / 'configs' / 'supervised_sequential.py'}:tiny",
        f"--config.model.name={tiny_bert_dir}",
        "--config.source.steps=6",
        "--config.train.steps=8",
        "--config.optim.strategy=gradual_unfreezing",
        "--config.optim.schedule=stlr",
    ]
    env = dict(os.environ, XLA_FLAGS=xla_flags(1))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    results = json.loads((wd / "results.json").read_text())
    assert "accuracy" in results["builtin/entailment"]  # source, evaluated after stage 1
    assert "accuracy" in results["builtin/sentiment"]  # target, after stage 2
    phases = json.loads((wd / "plan.json").read_text())["phases"]
    stages = [ph["stage"] for ph in phases]
    assert stages[0] == "source" and stages[-1] == "target"
    # gradual unfreezing of a 2-layer encoder: new params + top layer, ..., everything
    target = [ph for ph in phases if ph["stage"] == "target"]
    assert len(target) == 3
    trainable = [ph["trainable_params"] for ph in target]
    assert trainable == sorted(trainable) and trainable[0] < trainable[-1]
    # the old (source) head is frozen while adapting to the target, and vice versa
    for ph in phases:
        rows = {r["path"]: r for r in ph["params"]}
        other = "builtin_sentiment" if ph["stage"] == "source" else "builtin_entailment"
        own = "builtin_entailment" if ph["stage"] == "source" else "builtin_sentiment"
        assert not rows[f"heads/{other}/classifier/kernel"]["trainable"]
        assert rows[f"heads/{own}/classifier/kernel"]["trainable"]
    records = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    train_tasks = [r["task"] for r in records if r["split"] == "train"]
    assert train_tasks[:6] == ["builtin/entailment"] * 6
    assert train_tasks[6:] == ["builtin/sentiment"] * 8
    # a freezing schedule recompiles once per change of the trainable set, never per step
    comp = [r for r in records if r["split"] == "run" and r["task"] == "compilations"][-1]
    assert comp["train"] <= len(phases) + 1
