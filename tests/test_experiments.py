"""The experiment scripts' shared statistics and table writing (experiments/common.py)."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "experiments"))
import common  # noqa: E402
from conftest import xla_flags


def test_paired_bootstrap_detects_a_better_system_and_not_an_equal_one():
    rng = np.random.default_rng(0)
    b = (rng.random(300) < 0.6).astype(float)
    better = b.copy()
    better[np.flatnonzero(b == 0)[:40]] = 1.0  # 40 more examples right, none lost
    assert common.paired_bootstrap(better, b) < 0.01
    assert common.paired_bootstrap(b, better) > 0.99
    assert 0.0 < common.paired_bootstrap(b, rng.permutation(b)) < 1.0


def test_unigram_perplexity_is_the_dev_perplexity_of_train_frequencies():
    import lstm_lm_reference as ref

    train, dev = np.array([1, 1, 1, 2]), np.array([1, 2])
    # p(1) = 3/4, p(2) = 1/4: perplexity 1 / sqrt(3/16), within float rounding
    assert ref.unigram_perplexity(train, dev, smoothing=0.0) == pytest.approx(
        16**0.5 / 3**0.5, rel=1e-12
    )
    # smoothing gives an unseen piece mass, so a dev of it alone stays finite
    assert np.isfinite(ref.unigram_perplexity(train, np.array([7]), smoothing=0.1))


def test_welch_and_mean_std():
    assert common.welch([0.5, 0.51, 0.49], [0.7, 0.71, 0.69]) < 0.001
    assert common.welch([0.5, 0.6, 0.55], [0.5, 0.6, 0.55]) == pytest.approx(1.0)
    assert np.isnan(common.welch([0.5], [0.6, 0.7]))
    assert common.mean_std([0.5, 0.7]) == "60.0 ± 14.1"


def test_write_replaces_its_block_and_keeps_the_rest(tmp_path, monkeypatch):
    doc = tmp_path / "EXPERIMENTS.md"
    doc.write_text("# Experiments\n\nintro\n\n<!-- a:start -->\nold\n<!-- a:end -->\n\ntail\n")
    monkeypatch.setattr(common, "DOC", doc)
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    common.write("a", ["new table"], {"x": [1.0]})
    common.write("b", ["other"], {})
    text = doc.read_text()
    assert "old" not in text and "<!-- a:start -->\nnew table\n<!-- a:end -->" in text
    assert text.index("tail") < text.index("<!-- b:start -->")
    assert json.loads((tmp_path / "results" / "a.json").read_text()) == {"x": [1.0]}


def test_keep_earlier_tasks_merges_a_task_run_earlier_with_the_same_settings(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(sys, "argv", ["s.py", "--tasks", "mrpc"])
    args = argparse.Namespace(steps=200, tasks=["sst2"], seeds=[0, 1], out="/a", report_dir="/r")
    first = {"scores": {"full": {"sst2": [0.8]}}}
    assert common.keep_earlier_tasks("s", args, first, ("scores",), {"sst2": 60.0}, ORDER) == [
        "sst2"
    ]
    (tmp_path / "s.json").write_text(json.dumps(first))
    # the other task, same settings, more seeds, another output folder: both tasks in the table
    args = argparse.Namespace(steps=200, tasks=["mrpc"], seeds=[0, 1, 2], out="/b", report_dir="/r")
    raw = {"scores": {"full": {"mrpc": [0.7]}}}
    assert common.keep_earlier_tasks("s", args, raw, ("scores",), {"mrpc": 30.0}, ORDER) == [
        "sst2",
        "mrpc",
    ]
    assert raw["scores"] == {"full": {"mrpc": [0.7], "sst2": [0.8]}}
    assert raw["elapsed_s"] == {"sst2": 60.0, "mrpc": 30.0}
    assert raw["commands"]["mrpc"].endswith("s.py --tasks mrpc")
    assert raw["args"]["tasks"] == ["sst2", "mrpc"]
    names = {"sst2": "SST-2", "mrpc": "MRPC"}
    assert common.seeds_label(raw, ["sst2", "mrpc"], names) == "seeds SST-2 [0, 1], MRPC [0, 1, 2]"
    assert common.seeds_label(raw, ["mrpc"], names) == "seeds [0, 1, 2]"
    # other settings: the earlier task is dropped, not mixed into a table it was not run for
    args = argparse.Namespace(steps=100, tasks=["mrpc"], seeds=[0, 1], out="/b", report_dir="/r")
    raw = {"scores": {"full": {"mrpc": [0.7]}}}
    assert common.keep_earlier_tasks("s", args, raw, ("scores",), {"mrpc": 30.0}, ORDER) == ["mrpc"]
    assert raw["scores"] == {"full": {"mrpc": [0.7]}}


def test_run_seconds_counts_up_to_the_last_file_a_run_wrote(tmp_path):
    for name, t in (("config.json", 100), ("results.json", 160), ("predictions/x.jsonl", 400)):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("{}")
        os.utime(tmp_path / name, (t, t))
    assert common.run_seconds(tmp_path) == 300


ORDER = ("sst2", "rte", "mrpc")

SCRIPTS = {  # script -> the arguments that make it tiny (mechanics only, no claim)
    "stilts.py": ["--seeds", "0", "1", "--source-steps", "2", "--target-steps", "2"],
    "schedules.py": ["--seeds", "0", "--steps", "6"],  # chain-thaw: L + 3 = 5 phases
    "dapt.py": ["--seeds", "0", "--pretrain-steps", "2", "--steps", "2"],
    "semi_supervised.py": ["--seeds", "0", "--steps", "2", "--ner-labels", "16",
                           "--sst2-labels", "16"],
    "feature_based.py": ["--seeds", "0", "--steps", "2", "--finetune-steps", "2", "--bilstm", "8",
                         "--only", "finetune,last,scalar_mix,embeddings"],  # the last four need 4 layers
    "multitask_vs_single.py": ["--seeds", "0", "--steps", "2", "--refine", "1"],
    "class_weights.py": ["--seeds", "0", "--positives", "24", "--negatives", "8", "--epochs", "1"],
    "thresholds.py": ["--seeds", "0", "--train-sentences", "40", "--steps", "2"],
    "qa_feature_based.py": ["--seeds", "0", "--train-sentences", "40", "--steps", "2"],
    # the configs' :tiny sizes, every system (its stage 1 once, then both settings)
    "seed_systems.py": ["--seeds", "0", "--tiny", "--stage1-steps", "3", "--steps", "4"],
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_runs_end_to_end_on_a_tiny_model(script, tiny_bert_dir, data_dir, tmp_path):
    """Each experiment's one command, on the tiny BERT and a few examples: every run finishes,
    and the table and raw results are written (to a temporary report folder)."""
    import subprocess

    repo = pathlib.Path(__file__).resolve().parents[1]
    cmd = [sys.executable, str(repo / "experiments" / script), "--data-dir", str(data_dir),
           "--model", str(tiny_bert_dir), "--max-train-examples", "32", "--max-eval-examples",
           "16", "--batch-size", "4", "--max-length", "32", "--out", str(tmp_path / "runs"),
           "--report-dir", str(tmp_path), *SCRIPTS[script]]  # fmt: skip
    env = dict(os.environ, XLA_FLAGS=xla_flags(1))  # as users run
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    name = script.removesuffix(".py").replace("_", "-")
    text = (tmp_path / "EXPERIMENTS.md").read_text()
    assert "± " in text and "Command: `python experiments/" in text
    assert "MiniLM-L6 (packaged)" not in text, "the table must name the model the runs used"
    assert list((tmp_path / "results").glob("*.json")), name
    if script == "seed_systems.py":  # the frozen encoders' features: one folder per system
        for key in ("elmo", "cove"):
            assert list((tmp_path / "runs" / f"{key}-features").rglob("manifest.json")), key
        # every target run on the stage-1 checkpoint starts its own target head
        reports = list((tmp_path / "runs").glob("*-[0-9]-s0/transfer_report.json"))
        assert len(reports) >= 5, reports
        for path in reports:
            rep = json.loads(path.read_text())
            assert rep["skipped"] and all(p.startswith("heads/") for p in rep["skipped"]), path
            head = "/".join(rep["skipped"][0].split("/")[:2]) + "/"  # heads/<target task>/
            assert not any(p.startswith(head) for p in rep["loaded"]), path
    if script == "stilts.py":  # one source stage per source, shared by every seed's RTE run
        runs = tmp_path / "runs"
        assert sorted(p.name for p in runs.glob("*-source")) == [
            "mrpc-source",
            "mrpc-stsb-sst2-source",
            "sst2-source",
            "stsb-source",
        ]
        for path in runs.glob("*-s[01]/transfer_report.json"):
            rep = json.loads(path.read_text())
            assert rep["skipped"] and all(p.startswith("heads/rte/") for p in rep["skipped"]), path
            assert any(p.startswith("encoder/") for p in rep["loaded"]), path
        assert len(list(runs.glob("*-s[01]/transfer_report.json"))) == 8
        assert not (runs / "alone-s0" / "transfer_report.json").exists()
