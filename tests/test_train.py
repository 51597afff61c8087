"""The loop through launch.py: the workdir contract, resume after kill -9, clear errors."""

import json
import os
import pathlib
import subprocess
import sys

import pytest
from conftest import kill_after_checkpoint, xla_flags  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


def _cmd(workdir, model_dir, *extra):
    return [
        sys.executable,
        str(REPO / "launch.py"),
        "--regime=multitask",
        f"--workdir={workdir}",
        f"--config={REPO / 'configs' / 'multitask.py'}:tiny",
        f"--config.model.name={model_dir}",
        "--config.train.steps=16",
        "--config.train.eval_every=8",
        "--config.checkpoint.every_steps=4",
        "--config.optim.lr=1e-3",
        *extra,
    ]


def _env():
    env = dict(os.environ)
    env["XLA_FLAGS"] = xla_flags(1)
    return env


def _train_losses(workdir):
    out = {}
    for line in (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["split"] == "train":
            out[r["step"]] = (r["task"], r["loss"])
    return out


@pytest.fixture(scope="module")
def uninterrupted(tiny_bert_dir, tmp_path_factory):
    wd = tmp_path_factory.mktemp("run") / "wd"
    p = subprocess.run(_cmd(wd, tiny_bert_dir), env=_env(), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    return wd, p.stdout


def test_run_writes_every_contract_file(uninterrupted):
    wd, stdout = uninterrupted
    for f in ("config.json", "metrics.jsonl", "results.json", "plan.json", "loss.png",
              "dev_metrics.png", "plan.png"):  # fmt: skip
        assert (wd / f).is_file(), f
    assert (wd / "checkpoints").is_dir()
    assert any((wd / "tensorboard").iterdir())
    results = json.loads((wd / "results.json").read_text())
    # three tasks of three kinds, each evaluated with its own metrics
    assert set(results["builtin/sentiment"]) >= {"accuracy"}
    assert set(results["builtin/similarity"]) >= {"pearson", "spearman"}
    assert set(results["builtin/ner"]) >= {"span_f1"}
    assert "average" in results
    config = json.loads((wd / "config.json").read_text())
    assert config["train"]["steps"] == 16
    plan = json.loads((wd / "plan.json").read_text())["phases"][0]
    assert plan["trainable_params"] > 0 and plan["frozen_params"] == 0
    records = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train] == list(range(1, 17))
    assert all({"step", "split", "task", "loss"} <= set(r) for r in train)
    assert "builtin/sentiment" in stdout  # the per-task table
    # compiled once per shape, not per step or per evaluation (two evaluations ran here)
    comp = [r for r in records if r["split"] == "run" and r["task"] == "compilations"][-1]
    assert 1 <= comp["train"] <= len((32, 64, 128)) and 1 <= comp["eval"] <= len((32, 64, 128))


def test_kill_and_resume_continues_bit_identically(uninterrupted, tiny_bert_dir, tmp_path):
    """kill -9 after a checkpoint, re-run the same command: identical losses at every step."""
    ref_wd, _ = uninterrupted
    wd = tmp_path / "wd"
    kill_after_checkpoint(_cmd(wd, tiny_bert_dir), wd, 8, env=_env(), timeout=300)
    p = subprocess.run(_cmd(wd, tiny_bert_dir), env=_env(), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    ref = _train_losses(ref_wd)
    got = _train_losses(wd)
    assert sorted(got) == list(range(1, 17))
    assert got == ref  # exact: same tasks drawn, same losses, every step


def test_unknown_regime_and_key_fail_clearly(tmp_path):
    p = subprocess.run([sys.executable, str(REPO / "launch.py"), "--regime=transductive"],
                       capture_output=True, text=True, env=_env())  # fmt: skip
    assert p.returncode != 0
    assert "transductive" in (p.stderr + p.stdout) and "multitask" in (p.stderr + p.stdout)
    p = subprocess.run(
        [sys.executable, str(REPO / "launch.py"), "--regime=multitask",
         f"--workdir={tmp_path}", "--config.train.stepz=3"],
        capture_output=True, text=True, env=_env(),
    )  # fmt: skip
    assert p.returncode != 0
    assert "stepz" in p.stderr


def test_multitask_refinement_stage(tiny_bert_dir, tmp_path):
    """MT-DNN refinement: each task fine-tuned alone from the joint encoder, reported apart."""
    wd = tmp_path / "wd"
    # per-task settings naming several tasks: each refinement keeps its own task's (naming the
    # others in a one-task run stopped every refinement)
    cmd = _cmd(wd, tiny_bert_dir, "--config.refine.steps=3", "--config.train.steps=6",
               "--config.train.eval_every=0", "--config.tasks.weights=builtin/sentiment=2,"
               "builtin/ner=0.5", "--config.train.class_weights=builtin/ner=O:0.5,"
               "builtin/sentiment=balanced")  # fmt: skip
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    refined = json.loads((wd / "results_refined.json").read_text())
    assert set(refined) == {"builtin/sentiment", "builtin/similarity", "builtin/ner"}
    own = {t: json.loads((wd / "refine" / t / "config.json").read_text()) for t in
           ("builtin_sentiment", "builtin_similarity", "builtin_ner")}  # fmt: skip
    assert {t: (c["tasks"]["weights"], c["train"]["class_weights"]) for t, c in own.items()} == {
        "builtin_sentiment": ("builtin/sentiment=2.0", "builtin/sentiment=balanced"),
        "builtin_similarity": ("", ""),
        "builtin_ner": ("builtin/ner=0.5", "builtin/ner=O:0.5"),
    }
    for task in ("builtin_sentiment", "builtin_similarity", "builtin_ner"):
        report = json.loads((wd / "refine" / task / "transfer_report.json").read_text())
        # the encoder and the task's own head come from the joint run; nothing is new
        assert report["new"] == [] and report["mismatched"] == []
        assert any(p.startswith(f"heads/{task}/") for p in report["loaded"])
        losses = _train_losses(wd / "refine" / task)
        assert sorted(losses) == [1, 2, 3]
    assert "multitask + refinement" in p.stdout


def test_train_epochs_sets_the_stage_length_from_the_data(tiny_bert_dir, tmp_path):
    """--config.train.epochs=2: the joint stage runs twice its tasks' batches per epoch (the
    log states both numbers, the last training step is that count) while refinement keeps its
    own refine.steps; with train.eval_per_epoch it evaluates after each pass."""
    import re

    wd = tmp_path / "wd"
    cmd = _cmd(wd, tiny_bert_dir, "--config.train.epochs=2", "--config.refine.steps=2",
               "--config.train.eval_per_epoch=True", "--config.train.log_every=1")  # fmt: skip
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    (m,) = re.findall(r"stage multitask: train\.epochs=2 over (\d+) batches per epoch: (\d+) "
                      r"steps", p.stderr)  # fmt: skip
    per_epoch, steps = int(m[0]), int(m[1])
    # 3 tasks of 64 examples, 8 packed rows a batch: at least one batch each
    assert 3 <= per_epoch <= 24 and steps == 2 * per_epoch != 16  # not train.steps
    assert max(_train_losses(wd)) == steps
    evals = sorted({r["step"] for r in map(json.loads, (wd / "metrics.jsonl").read_text()
                                           .splitlines()) if r["split"] == "dev"})  # fmt: skip
    assert evals == [per_epoch, steps], evals  # not every 8 steps (_cmd's train.eval_every)
    assert max(_train_losses(wd / "refine" / "builtin_ner")) == 2


def test_epoch_steps_counts_the_tasks_batches_and_the_objectives_share():
    from types import SimpleNamespace

    from jaxtl.stages import epoch_steps

    def td(n):
        return SimpleNamespace(task=SimpleNamespace(name=f"t{n}"),
                               train_iter=SimpleNamespace(batches_per_epoch=lambda: n))  # fmt: skip

    own = [td(3), td(4)]
    assert epoch_steps("s", 300, 0.0, own) == 300  # off: train.steps
    assert epoch_steps("s", 300, 2.0, own) == 14
    assert epoch_steps("s", 300, 0.5, own) == 4  # ceil(3.5)
    # one labelled step in three (an objective's stream takes the others): 3x the steps
    pattern = ("unlabelled", "labelled", "unlabelled")
    assert epoch_steps("s", 300, 1.0, own, pattern) == 21
    with pytest.raises(ValueError, match="task 't9' has no training batches"):
        epoch_steps("s", 300, 1.0, [SimpleNamespace(task=SimpleNamespace(name="t9"),
                                                    train_iter=None)])  # fmt: skip


@pytest.mark.parametrize("regime,key,stage", [
    ("supervised_sequential", "source.epochs", "source"),
    # masked-LM batches, wrapped; slow (~30 s on 2 cores): the same sizing as source.epochs
    pytest.param("unsupervised_sequential", "pretrain.epochs", "pretrain",
                 marks=pytest.mark.slow),
])  # fmt: skip
def test_the_earlier_stages_take_epochs_too(tiny_bert_dir, tmp_path, regime, key, stage):
    """source.epochs (STILTs' intermediate task) and pretrain.epochs (the LM corpus) size their
    stage from its data as train.epochs does the last one."""
    import re

    wd = tmp_path / "wd"
    cmd = [sys.executable, str(REPO / "launch.py"), f"--regime={regime}", f"--workdir={wd}",
           f"--config={REPO / 'configs' / f'{regime}.py'}:tiny", f"--config.model.name={tiny_bert_dir}",
           f"--config.{key}=1", "--config.train.log_every=1"]  # fmt: skip
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    (m,) = re.findall(rf"stage {stage}: {re.escape(key)}=1 over (\d+) batches per epoch: (\d+) "
                      r"steps", p.stderr)  # fmt: skip
    assert int(m[0]) == int(m[1]) >= 1 and int(m[1]) != 10  # not the :tiny config's 10 steps
    done = re.findall(rf"stage {stage} done at step (\d+)", p.stderr)
    assert done == [m[1]], done
