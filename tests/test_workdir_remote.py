"""A non-local workdir end to end: a ``gs://`` run (on tests/fake_gcs.py's stand-in for GCS)
writes every contract file there, resumes from there, and ``launch.py --predict/--export`` read
it and write ``gs://`` outputs — with nothing written to the local path the URL would become
if any call treated it as a local file name (``gs:/B/r/...``, the old bug)."""

import json
import subprocess
import sys

import pytest

from jaxtl import fileio

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
FAKE = REPO / "tests" / "fake_gcs.py"

CONTRACT = ["config.json", "tasks.json", "metrics.jsonl", "plan.json", "results.json",
            "results_test.json", "selection.json", "head_init.json", "loss.png",
            "dev_metrics.png", "plan.png",
            "predictions/builtin/sentiment/dev.jsonl"]  # fmt: skip


def _launch(cwd, root, *args):
    cmd = [sys.executable, str(FAKE), str(root), str(REPO / "launch.py"), *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


def _train(cwd, root, model_dir, steps):
    return _launch(cwd, root, "--regime=multitask", f"--config={REPO}/configs/multitask.py:tiny",
                   f"--config.model.name={model_dir}",
                   "--config.tasks.names=('builtin/sentiment',)", f"--config.train.steps={steps}",
                   "--config.checkpoint.every_steps=2", "--workdir=gs://bkt/runs/r1")  # fmt: skip


def test_a_gs_workdir_holds_the_whole_run_resumes_and_serves_predict_and_export(
    tiny_bert_dir, tmp_path
):
    cwd, root = tmp_path / "cwd", tmp_path / "gcs"
    cwd.mkdir()
    wd = root / "bkt" / "runs" / "r1"  # where the stand-in keeps gs://bkt/runs/r1

    p = _train(cwd, root, tiny_bert_dir, 4)
    assert p.returncode == 0, p.stderr[-3000:]
    for name in CONTRACT:
        assert (wd / name).is_file() and (wd / name).stat().st_size > 0, name
    assert any((wd / "tensorboard").iterdir())
    assert sorted(c.name for c in (wd / "checkpoints").iterdir()) == ["2", "4"]
    assert (wd / "checkpoints" / "4" / "commit_success.txt").exists()  # orbax's GCS commit path
    assert not (wd / ".jaxtl.lock").exists()  # released through the same filesystem

    # More steps on the same workdir: resumes from the gs:// checkpoint at step 4.
    p = _train(cwd, root, tiny_bert_dir, 6)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "from step 4" in p.stderr
    rows = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert "6" in {c.name for c in (wd / "checkpoints").iterdir()}

    (cwd / "in.txt").write_text("a moving, clever film\ndull and tired\n")
    p = _launch(cwd, root, "--predict", "--workdir=gs://bkt/runs/r1", "--input=in.txt",
                "--output=gs://bkt/out/pred.jsonl")  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    preds = [json.loads(x) for x in (root / "bkt/out/pred.jsonl").read_text().splitlines()]
    assert len(preds) == 2 and all("label" in r for r in preds)

    p = _launch(cwd, root, "--export", "--workdir=gs://bkt/runs/r1", "--output=gs://bkt/exp")
    assert p.returncode == 0, p.stderr[-3000:]
    exp = root / "bkt" / "exp"
    assert (exp / "model.safetensors").is_file() and (exp / "config.json").is_file()
    assert (exp / "builtin/sentiment/model.safetensors").is_file()
    card = (exp / "builtin/sentiment/README.md").read_text()
    assert "gs://bkt/exp" in card and "jaxtl-" not in card  # names the destination, not a temp
    exported = json.loads((exp / "export_report.json").read_text())
    assert exported["builtin/sentiment"]["path"] == "gs://bkt/exp/builtin/sentiment"

    # Nothing took the URL for a local file name (relative to the working directory).
    assert list(cwd.iterdir()) == [cwd / "in.txt"], list(cwd.iterdir())
    assert not (REPO / "gs:").exists()


def test_write_atomic_leaves_the_old_file_and_no_temporary_on_a_failed_write(tmp_path, monkeypatch):
    import errno

    from etils import epath

    target = tmp_path / "results.json"
    target.write_text('{"old": 1}\n')

    def full(self, data, *a, **k):
        with open(self, "w") as f:
            f.write(data[:3])  # part of it lands, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(epath.Path, "write_text", full)
    with pytest.raises(OSError, match="No space left"):
        fileio.write_atomic(target, '{"new": 2}\n')
    assert target.read_text() == '{"old": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_write_atomic_names_the_file_being_written_not_its_temporary(tmp_path, monkeypatch):
    """A failed write names the destination: the temporary name means nothing to a user."""
    import errno

    from etils import epath

    def refused(self, data, *a, **k):
        raise OSError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(epath.Path, "write_text", refused)
    with pytest.raises(PermissionError) as e:
        fileio.write_atomic(tmp_path / "out.jsonl", "x\n")
    assert e.value.filename == str(tmp_path / "out.jsonl"), e.value
    assert ".tmp-" not in str(e.value)
    assert list(tmp_path.iterdir()) == []
