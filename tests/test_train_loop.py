"""The loop in-process: non-finite stop keeps the last good checkpoint; early stop; best params."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from jaxtl import assembly, train
from jaxtl import checkpoint as ckpt_lib
from jaxtl import mesh as mesh_lib
from jaxtl import run as run_lib
from jaxtl.configs import multitask as multitask_config
from jaxtl.data import feed
from jaxtl.data.prepare import prepare_tasks
from jaxtl.regimes import multitask


class PoisonFeed:
    """Wraps a feed; from step ``at`` on, regression targets are NaN (a corrupt batch)."""

    def __init__(self, inner, at):
        self.inner, self.at = inner, at

    def next_batch(self, step):
        b = self.inner.next_batch(step)
        if step >= self.at:
            b["score"] = np.full_like(b["score"], np.nan)
        return b

    def state(self):
        return self.inner.state()

    def restore(self, s):
        self.inner.restore(s)

    def task_of(self, b):
        return self.inner.task_of(b)


def _setup(tiny_bert_dir, names, steps=12):
    c = multitask_config.get_config("tiny")
    c.model.name = str(tiny_bert_dir)
    c.tasks.names = tuple(names)
    c.train.steps = steps
    c.train.eval_every = 4
    c.checkpoint.every_steps = 4
    pre = assembly.load_encoder(c)
    tds = prepare_tasks(c.tasks.names, c, pre.tokenizer)
    model = assembly.build_model(pre.model, tds, c)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    return c, tds, model, multitask.joint_stage(c, tds, params)


def _poisoned_run(tiny_bert_dir, tmp_path, at: int, stops_at: int):
    """Train builtin/similarity (checkpoint and eval every 4 steps) with NaN targets from step
    index ``at`` on; the run must stop with NonFiniteLoss naming step ``stops_at``. Returns the
    model and the metrics.jsonl records."""
    c, tds, model, stage = _setup(tiny_bert_dir, ["builtin/similarity"])
    stage.feed = PoisonFeed(stage.feed, at=at)
    mesh = mesh_lib.make_mesh(1, 1, 1, devices=jax.devices()[:1])
    trainer = train.Trainer(model, [stage], workdir=tmp_path, mesh=mesh,
                            config=run_lib.train_config(c))  # fmt: skip
    with pytest.raises(train.NonFiniteLoss, match=f"step {stops_at}"):
        trainer.run()
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    return model, records


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tiny_bert_dir, tmp_path):
    model, records = _poisoned_run(tiny_bert_dir, tmp_path, at=6, stops_at=7)  # the 7th step
    ck = ckpt_lib.Checkpointer(tmp_path / "checkpoints")
    assert ck.latest_step() == 4
    params = ckpt_lib.load_params(tmp_path, nnx.to_pure_dict(nnx.state(model, nnx.Param)))[0]
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(params))
    train_recs = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train_recs] == list(range(1, 8))
    assert train_recs[-1]["loss"] == "nan" and np.isfinite(train_recs[-2]["loss"])


def test_a_run_stopped_by_an_error_leaves_the_checkpoint_it_was_writing_whole(
    tiny_bert_dir, tmp_path, monkeypatch
):
    """Checkpoints are written in the background (checkpoint.async_save, the default): the
    step-4 checkpoint is still being finished (its checksums held back 2 s) when a non-finite
    step stops the run, and the run waits for it before the error leaves ``run``."""
    import time

    real = ckpt_lib.checksums

    def slow(*a, **k):
        time.sleep(2)
        return real(*a, **k)

    monkeypatch.setattr(ckpt_lib, "checksums", slow)
    _poisoned_run(tiny_bert_dir, tmp_path, at=4, stops_at=5)
    assert (tmp_path / "checkpoints" / "4" / ckpt_lib.CHECKSUMS).exists()
    ck = ckpt_lib.Checkpointer(tmp_path / "checkpoints")
    assert ck.latest_good_step() == 4 and ck.verify(4) is None
    ck.close()


def test_a_last_checkpoint_failing_in_the_background_leaves_the_run_unfinished(
    tiny_bert_dir, tmp_path, monkeypatch
):
    """The end-of-run checkpoint is written in the background; when it fails (its checksums
    file cannot be written: a disk full for that file alone) the run raises that error before
    results.json marks the workdir finished — a finished workdir is never resumed."""
    import errno

    real = ckpt_lib.fileio.write_atomic

    def full_at_the_end(path, text):
        if str(path).endswith(f"checkpoints/12/{ckpt_lib.CHECKSUMS}"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, text)

    monkeypatch.setattr(ckpt_lib.fileio, "write_atomic", full_at_the_end)
    c, tds, model, stage = _setup(tiny_bert_dir, ["builtin/similarity"])
    mesh = mesh_lib.make_mesh(1, 1, 1, devices=jax.devices()[:1])
    trainer = train.Trainer(model, [stage], workdir=tmp_path, mesh=mesh,
                            config=run_lib.train_config(c))  # fmt: skip
    with pytest.raises(OSError, match="No space left"):
        trainer.run()
    assert not (tmp_path / "results.json").exists()
    assert (tmp_path / "checkpoints" / "8" / ckpt_lib.CHECKSUMS).exists()


def test_a_nonfinite_step_on_a_checkpoint_step_is_caught_before_anything_is_saved(
    tiny_bert_dir, tmp_path
):
    """A step's finite flag is read once the next step is queued, so the host need not wait
    for every step; but a step that evaluates or checkpoints reads it first: poisoned from the
    8th step, where an evaluation and a checkpoint fall, the run stops at step 8 with step 4 its
    last checkpoint and no dev record for step 8."""
    _, records = _poisoned_run(tiny_bert_dir, tmp_path, at=7, stops_at=8)
    assert ckpt_lib.Checkpointer(tmp_path / "checkpoints").latest_step() == 4
    assert [r["step"] for r in records if r["split"] == "dev"] == [4]
    assert max(r["step"] for r in records if r["split"] == "train") == 8


def test_early_stop_and_best_checkpoint(tiny_bert_dir, tmp_path):
    c, tds, model, stage = _setup(tiny_bert_dir, ["builtin/sentiment"], steps=40)
    # an absurd learning rate stalls the dev metric, so patience 1 stops the stage early
    c.train.early_stop_patience = 1
    stage.optim.lr = 0.0
    mesh = mesh_lib.make_mesh(1, 1, 1, devices=jax.devices()[:1])
    trainer = train.Trainer(model, [stage], workdir=tmp_path, mesh=mesh,
                            config=run_lib.train_config(c))  # fmt: skip
    results = trainer.run()
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    last_train = max(r["step"] for r in records if r["split"] == "train")
    assert last_train == 8  # evaluations at 4 (best) and 8 (no better) -> stop
    assert "builtin/sentiment" in results
    assert (tmp_path / "best" / "multitask").is_dir()
    best_params, rep = ckpt_lib.load_params(
        tmp_path / "best" / "multitask", nnx.to_pure_dict(nnx.state(model, nnx.Param))
    )
    assert not rep.new and not rep.mismatched


@pytest.mark.parametrize("progress", [True, False])
def test_without_a_terminal_progress_is_log_lines(tiny_bert_dir, tmp_path, caplog, monkeypatch,
                                                  progress):  # fmt: skip
    """Under pytest stderr is no terminal, so tqdm shows no bar: with train.progress the run
    says where it is in log lines (here at every log point) and each evaluation's scores;
    with progress off it says neither."""
    import logging
    import re

    c, tds, model, stage = _setup(tiny_bert_dir, ["builtin/similarity"], steps=8)
    c.train.progress = progress
    c.train.log_every = 4
    monkeypatch.setattr(train, "PROGRESS_LINE_EVERY_S", 0.0)
    mesh = mesh_lib.make_mesh(1, 1, 1, devices=jax.devices()[:1])
    trainer = train.Trainer(model, [stage], workdir=tmp_path, mesh=mesh,
                            config=run_lib.train_config(c))  # fmt: skip
    with caplog.at_level(logging.INFO, logger="jaxtl.train"):
        trainer.run()
    lines = [r.getMessage() for r in caplog.records if r.name == "jaxtl.train"]
    steps = [x for x in lines if re.fullmatch(r"step \d/8 \(multitask\): builtin/similarity loss "
                                              r"\d+\.\d{4}, lr \S+, [\d.]+ steps/s, about \d+ s "
                                              r"left", x)]  # fmt: skip
    devs = [x for x in lines if x.startswith("step 4 (multitask) dev builtin/similarity: ")]
    if progress:
        assert [x.split("/")[0] for x in steps] == ["step 4", "step 8"] and len(devs) == 1
        assert "pearson=" in devs[0]
    else:
        assert steps == [] and devs == []


def test_mixture_feed_counts_and_ids():
    class It:
        def __init__(self):
            self.n = 0

        def __next__(self):
            self.n += 1
            return {"task_id": np.zeros(2, np.int32), "x": np.full(2, self.n)}

        def state(self):
            return {"n": self.n}

        def restore(self, s):
            self.n = s["n"]

    f = feed.MixtureFeed(["a", "b"], [It(), It()], lambda s: s % 2, task_ids=[3, 5])
    b0, b1 = f.next_batch(0), f.next_batch(1)
    assert (b0["task_id"] == 3).all() and (b1["task_id"] == 5).all()
    assert f.task_of(b1) == "b" and f.counts == {"a": 1, "b": 1}


def _trainer(tiny_bert_dir, tmp_path, *, steps=12, eval_every=4, checkpoint_every=4, lr=None):
    c, tds, model, stage = _setup(tiny_bert_dir, ["builtin/similarity"], steps=steps)
    c.train.eval_every = stage.eval_every = eval_every
    c.checkpoint.every_steps = checkpoint_every
    c.checkpoint.async_best = True
    if lr is not None:
        stage.optim.lr = lr
    mesh = mesh_lib.make_mesh(1, 1, 1, devices=jax.devices()[:1])
    trainer = train.Trainer(model, [stage], workdir=tmp_path, mesh=mesh,
                            config=run_lib.train_config(c))  # fmt: skip
    return trainer, stage, model


def test_best_params_cut_short_at_a_checkpoint_step_are_rewritten_on_resume(
    tiny_bert_dir, tmp_path, monkeypatch
):
    """Best params written in the background (checkpoint.async_best): the step-4
    checkpoint does not wait for the step-4 best params, so a run can stop with that
    checkpoint on disk and its best missing (here their write fails: a full disk, raised at
    the next checkpoint). The evaluation at step 4 is not replayed on resume, so the resumed
    run rewrites those params from the checkpoint's; with lr 0 no later evaluation improves
    on them, and step 4's params are what the run selects."""
    import errno

    def full(directory, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(directory))

    monkeypatch.setattr(ckpt_lib, "save_params", full)
    trainer, _, _ = _trainer(tiny_bert_dir, tmp_path, lr=0.0)
    with pytest.raises(OSError, match="No space left"):
        trainer.run()
    assert ckpt_lib.Checkpointer(tmp_path / "checkpoints").latest_step() == 4
    assert ckpt_lib.saved_params_steps(tmp_path / "best" / "multitask") == []
    monkeypatch.undo()

    trainer, stage, model = _trainer(tiny_bert_dir, tmp_path, lr=0.0)
    trainer.run()
    assert ckpt_lib.saved_params_steps(tmp_path / "best" / "multitask") == [4]
    _, info = trainer.selected(0, stage)
    assert (info["params"], info["step"]) == ("best/multitask", 4)
    like = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    best, _ = ckpt_lib.load_params(tmp_path / "best" / "multitask", like)
    ck = ckpt_lib.Checkpointer(tmp_path / "checkpoints")
    saved = ckpt_lib.load_params(tmp_path / "checkpoints", like)[0]  # the last: step 12, lr 0
    ck.close()
    for a, b in zip(jax.tree.leaves(best), jax.tree.leaves(saved)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_checkpoint_waits_for_the_best_params_of_an_earlier_evaluation(
    tiny_bert_dir, tmp_path, monkeypatch
):
    """A resume does not replay the evaluations before its checkpoint, so the best params
    those set must be on disk before the checkpoint is: the step-4 best (held back 2 s) is
    there when the step-6 checkpoint is saved (no evaluation falls between them)."""
    import time

    real_save, real_ckpt = ckpt_lib.save_params, ckpt_lib.Checkpointer.save
    seen = {}

    def slow(directory, step, *a, **k):
        time.sleep(2 if step == 4 else 0)
        return real_save(directory, step, *a, **k)

    def ckpt(self, step, state, meta):
        seen[step] = ckpt_lib.saved_params_steps(tmp_path / "best" / "multitask")
        return real_ckpt(self, step, state, meta)

    monkeypatch.setattr(ckpt_lib, "save_params", slow)
    monkeypatch.setattr(ckpt_lib.Checkpointer, "save", ckpt)
    trainer, _, _ = _trainer(tiny_bert_dir, tmp_path, steps=8, eval_every=4, checkpoint_every=6)
    trainer.run()
    assert seen[6] == [4]


def _two_stages(tiny_bert_dir, workdir):
    """Two 4-step stages of builtin/similarity (a checkpoint every 4 steps: the first stage's
    last step is one) and a Trainer over them."""
    c, tds, model, _ = _setup(tiny_bert_dir, ["builtin/similarity"], steps=4)
    c.optim.lr = 1e-3
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    first = multitask.joint_stage(c, tds, params, name="first")
    second = multitask.joint_stage(c, tds, params, name="second")
    mesh = mesh_lib.make_mesh(1, 1, 1, devices=jax.devices()[:1])
    trainer = train.Trainer(model, [first, second], workdir=workdir, mesh=mesh,
                            config=run_lib.train_config(c))  # fmt: skip
    return trainer, first


def _records(workdir, split):
    """metrics.jsonl's rows of ``split`` (without the wall-clock rate of train rows)."""
    rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [
        {k: v for k, v in r.items() if k != "steps_per_sec"} for r in rows if r["split"] == split
    ]


def test_a_resume_from_a_stage_end_goes_on_from_the_restored_params(tiny_bert_dir, tmp_path):
    """A run stopped after the checkpoint at the first stage's last step resumes there: that
    stage's end evaluation is replayed, and the next stage trains, from the restored params —
    dev results, selection and every later loss equal an uninterrupted run's."""
    ref_dir, wd = tmp_path / "ref", tmp_path / "wd"
    ref, _ = _two_stages(tiny_bert_dir, ref_dir)
    ref_results = ref.run()

    class Stop(Exception):
        pass

    def stop_at_6(ev):
        if ev.step == 6:
            raise Stop

    trainer, _ = _two_stages(tiny_bert_dir, wd)
    trainer.after_step.append(stop_at_6)
    with pytest.raises(Stop):
        trainer.run()
    assert ckpt_lib.Checkpointer(wd / "checkpoints").latest_step() == 4
    trainer, first = _two_stages(tiny_bert_dir, wd)
    assert trainer.run() == ref_results
    assert _records(wd, "dev") == _records(ref_dir, "dev")
    assert _records(wd, "train") == _records(ref_dir, "train") and len(_records(wd, "train")) == 8
    assert trainer.selected(0, first)[1] == ref.selected(0, first)[1]
