"""Nothing lost, nobody fooled: SIGTERM checkpoints and exits 0 and the resume equals an
uninterrupted run; a torn latest checkpoint is moved aside and the previous one resumed, again
equal to the uninterrupted run; a finished workdir re-runs cleanly; a changed config on resume
is refused naming the keys; a live run's workdir is locked, a dead one's lock taken over; a torn
last line of metrics.jsonl is repaired."""

import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from jaxtl import config as config_lib
from jaxtl import report, workdir

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def _cmd(model_dir, wd, *extra):
    return [sys.executable, "launch.py", "--regime=multitask", "--config=configs/multitask.py:tiny",
            f"--config.model.name={model_dir}", "--config.tasks.names=('builtin/sentiment',)",
            "--config.train.steps=12", "--config.checkpoint.every_steps=4",
            f"--workdir={wd}", *extra]  # fmt: skip


def _run(cmd):
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


def _losses(wd):
    rows = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if r["split"] == "train"]


@pytest.fixture(scope="module")
def finished(tiny_bert_dir, tmp_path_factory):
    wd = tmp_path_factory.mktemp("rel") / "done"
    p = _run(_cmd(tiny_bert_dir, wd))
    assert p.returncode == 0, p.stderr[-3000:]
    return wd


def test_sigterm_checkpoints_exits_0_and_the_resume_is_exact(tiny_bert_dir, finished, tmp_path):
    wd = tmp_path / "stopped"
    proc = subprocess.Popen(_cmd(tiny_bert_dir, wd), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (wd / "metrics.jsonl").exists() and len(_losses(wd)) >= 3:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "stopped by SIGTERM" in out and "run the same command to resume" in out
    stopped_at = workdir.has_checkpoints(wd) and max(
        int(p.name) for p in (wd / "checkpoints").iterdir() if p.name.isdigit()
    )
    assert 3 <= stopped_at < 12
    p = _run(_cmd(tiny_bert_dir, wd))
    assert p.returncode == 0, p.stderr[-3000:]
    assert _losses(wd) == _losses(finished)  # every logged step, bit for bit


def test_rerunning_a_finished_workdir_prints_results_and_exits_0(tiny_bert_dir, finished):
    before = json.loads((finished / "results.json").read_text())
    p = _run(_cmd(tiny_bert_dir, finished))
    assert p.returncode == 0, p.stderr[-3000:]
    assert "builtin/sentiment" in p.stdout
    assert json.loads((finished / "results.json").read_text()) == before


def test_a_changed_config_on_resume_is_refused_naming_the_keys(tiny_bert_dir, finished):
    p = _run(_cmd(tiny_bert_dir, finished, "--config.optim.lr=0.5", "--config.seed=3"))
    assert p.returncode != 0
    assert "optim.lr: 0.0001 -> 0.5" in p.stderr and "seed: 0 -> 3" in p.stderr
    assert "allow_config_change" in p.stderr and "Traceback" not in p.stderr


def test_a_resume_whose_data_gives_other_labels_is_refused(tiny_bert_dir, finished, tmp_path):
    """The checkpoint's heads give each class id the meaning tasks.json saved: a run whose
    training file gained a class, or whose labels now read in another order, is refused before
    it trains; the same labels resume."""
    wd = tmp_path / "relabelled"
    shutil.copytree(finished, wd)
    manifest = json.loads((wd / "tasks.json").read_text())
    saved = manifest["tasks"][0]["label_names"]
    assert len(saved) >= 2
    manifest["tasks"][0]["label_names"] = saved[::-1]
    (wd / "tasks.json").write_text(json.dumps(manifest))
    p = _run(_cmd(tiny_bert_dir, wd))
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert (f"task 'builtin/sentiment' had label_names {saved[::-1]!r}; its data now gives "
            f"{saved!r}: resuming would give its classes other meanings") in p.stderr  # fmt: skip
    Task = collections.namedtuple("Task", "name kind label_names")
    manifest["tasks"][0]["label_names"] = saved
    (wd / "tasks.json").write_text(json.dumps(manifest))
    workdir.check_resume_tasks(wd, [Task("builtin/sentiment", "classification", saved)])
    with pytest.raises(ValueError, match="had kind 'classification'; its data now gives"):
        workdir.check_resume_tasks(wd, [Task("builtin/sentiment", "regression", ())])


def test_config_changes_ignore_what_does_not_change_the_experiment():
    c = config_lib.base_config()
    old = c.to_dict()
    c.train.steps, c.train.log_every, c.mesh.fsdp = 999, 1, 2
    c.cpu_kernels = "ynnpack"
    assert workdir.config_changes(old, c.to_dict()) == []
    # A workdir written before a key existed resumes when the key is one of these.
    del old["cpu_kernels"]
    assert workdir.config_changes(old, c.to_dict()) == []
    c.optim.strategy = "lora"
    assert workdir.config_changes(old, c.to_dict()) == [("optim.strategy", "finetune", "lora")]


def test_a_model_folder_saved_relative_resumes_once_made_absolute(tmp_path, monkeypatch):
    """model.name is saved absolute (config_lib.absolute_local_paths); a workdir whose
    config.json still has it relative resumes from the folder it names, and only from there."""
    (tmp_path / "mymodel").mkdir()
    monkeypatch.chdir(tmp_path)
    c = config_lib.base_config()
    c.model.name = "mymodel"
    old = c.to_dict()
    config_lib.absolute_local_paths(c)
    assert c.model.name == str(tmp_path / "mymodel")
    assert workdir.config_changes(old, c.to_dict()) == []
    c.model.name = str(tmp_path / "other")
    assert workdir.config_changes(old, c.to_dict()) == [
        ("model.name", "mymodel", str(tmp_path / "other"))]  # fmt: skip
    hub = config_lib.base_config()  # a hub id, or a folder that is not here, stays as it is
    hub.model.name = "org/model"
    config_lib.absolute_local_paths(hub)
    assert hub.model.name == "org/model"
    (tmp_path / "minilm").mkdir()  # the packaged model's short name wins, as when loading
    hub.model.name = "minilm"
    config_lib.absolute_local_paths(hub)
    assert hub.model.name == "minilm"


def test_a_live_runs_workdir_is_locked_and_a_dead_runs_lock_taken_over(tiny_bert_dir, tmp_path):
    wd = tmp_path / "locked"
    wd.mkdir()
    lock = wd / ".jaxtl.lock"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    p = _run(_cmd(tiny_bert_dir, wd))
    assert p.returncode != 0 and f"in use by pid {os.getpid()}" in p.stderr
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead)}))
    owner = workdir.Lock(wd).acquire()
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    owner.release()
    assert not lock.exists()


def test_a_torn_last_line_of_metrics_is_repaired_and_a_bad_middle_line_named(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    assert report.read_jsonl_repairing(path) == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]
    assert path.read_text().endswith('"loss": 1.5}\n')
    path.write_text('{"step": 1}\n{"ste\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2"):
        report.read_jsonl_repairing(path)


def test_bad_values_fail_before_any_heavy_work_in_one_line(tmp_path):
    c = config_lib.base_config()
    c.optim.strategy = "foo"
    with pytest.raises(ValueError, match="optim.strategy: unknown value 'foo'"):
        config_lib.validate(c)
    c = config_lib.base_config()
    c.train.batch_size, c.train.accum_steps = 30, 4
    with pytest.raises(ValueError, match="not divisible"):
        config_lib.validate(c)
    c = config_lib.base_config()
    c.data.max_length = 256  # longer than the largest bucket (128): no row would hold it
    with pytest.raises(ValueError, match=r"data.max_length=256 is longer than the largest of "
                                         r"data.buckets=\(32, 64, 128\): add a bucket"):  # fmt: skip
        config_lib.validate(c)
    c = config_lib.base_config()
    c.train.epochs = -1.0
    with pytest.raises(ValueError, match=r"train.epochs=-1.0: must be >= 0"):
        config_lib.validate(c)
    cmd = [sys.executable, "launch.py", "--regime=multitask", "--config.optim.strategy=foo",
           f"--workdir={tmp_path / 'x'}"]  # fmt: skip
    p = _run(cmd)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("jaxtl: error: ValueError: optim:")
    assert not (tmp_path / "x" / "config.json").exists()  # nothing was written


def test_a_torn_latest_checkpoint_is_moved_aside_and_the_previous_one_resumed(
    tiny_bert_dir, finished, tmp_path
):
    import shutil

    wd = tmp_path / "torn"
    shutil.copytree(finished, wd)
    (wd / ".jaxtl.lock").unlink(missing_ok=True)
    # The finished run keeps its last two checkpoints (steps 8 and 12): tear the latest.
    steps = sorted(int(p.name) for p in (wd / "checkpoints").iterdir() if p.name.isdigit())
    assert len(steps) >= 2, steps
    latest = wd / "checkpoints" / str(steps[-1])
    for f in latest.rglob("*"):
        if f.is_file() and "ocdbt.process_0/d" in str(f):
            f.write_bytes(f.read_bytes()[:10])  # a torn write: every array chunk truncated
    p = _run(_cmd(tiny_bert_dir, wd))
    assert p.returncode == 0, p.stderr[-3000:]
    assert "unreadable" in p.stderr and f"resuming {wd} from step {steps[-2]}" in p.stderr
    assert (wd / "corrupt_checkpoints" / str(steps[-1])).is_dir()  # moved aside, not deleted
    assert _losses(wd) == _losses(finished)


def test_a_flipped_bit_that_still_decodes_is_caught_by_the_checksum(
    tiny_bert_dir, finished, tmp_path
):
    import shutil

    wd = tmp_path / "flipped"
    shutil.copytree(finished, wd)
    (wd / ".jaxtl.lock").unlink(missing_ok=True)
    steps = sorted(int(p.name) for p in (wd / "checkpoints").iterdir() if p.name.isdigit())
    latest = wd / "checkpoints" / str(steps[-1])
    assert (latest / "jaxtl_checksums.json").is_file()
    from jaxtl.checkpoint import Checkpointer

    # One bit in the largest array chunk (mostly the word embeddings): orbax's zstd chunks carry
    # no checksum, so such a flip usually reads back as slightly different numbers. Which array
    # the middle byte belongs to depends on the order orbax wrote them in, which varies between
    # runs, and a flip in a compressed block's header would not decode at all (the unreadable
    # case above): so the bit is chosen where the read-back succeeds and only the checksums
    # tell — a flip that nothing detects fails here.
    chunk = max((f for f in latest.rglob("*") if f.is_file() and "ocdbt.process_0/d" in str(f)),
                key=lambda f: f.stat().st_size)  # fmt: skip
    original = chunk.read_bytes()
    for offset in range(len(original) // 2, len(original), 4099):
        data = bytearray(original)
        data[offset] ^= 0x10
        chunk.write_bytes(bytes(data))
        problem = Checkpointer(wd / "checkpoints").verify(steps[-1])
        assert problem is not None, f"a flipped bit at {chunk}:{offset} went unnoticed"
        if problem.startswith("checksum mismatch in "):
            break
        chunk.write_bytes(original)  # did not decode: try the next block's data
    else:
        pytest.fail("no flipped bit decoded")
    p = _run(_cmd(tiny_bert_dir, wd))
    assert p.returncode == 0, p.stderr[-3000:]
    assert problem in p.stderr
    assert f"resuming {wd} from step {steps[-2]}" in p.stderr
    assert (wd / "corrupt_checkpoints" / str(steps[-1])).is_dir()
    assert _losses(wd) == _losses(finished)


def test_a_full_disk_mid_checkpoint_stops_in_one_line_keeps_the_good_one_and_resumes(
    tiny_bert_dir, finished, tmp_path
):
    from jaxtl import checkpoint

    wd = tmp_path / "full"
    # From orbax's third file of step 8 on (mid-save: its array data is being written), every
    # write through epath gets half its bytes, then ENOSPC.
    p = _run(
        [sys.executable, "scripts/full_disk.py", "checkpoints/8", "3", *_cmd(tiny_bert_dir, wd)[1:]]
    )
    assert p.returncode == 1
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("jaxtl: error: no space left on device writing ") and "resume" in last
    # The cut save is an uncommitted temporary folder (when orbax got to create it), never a step;
    # opening the folder removes it.
    ckpt = checkpoint.Checkpointer(wd / "checkpoints")
    assert ckpt.manager.all_steps() == [4] and ckpt.verify(4) is None  # the good one stands
    ckpt.close()
    assert not [f for f in wd.rglob("*") if ".tmp-" in f.name]  # no half-written jaxtl file
    assert not (wd / ".jaxtl.lock").exists()
    p = _run(_cmd(tiny_bert_dir, wd))
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"resuming {wd} from step 4" in p.stderr
    assert _losses(wd) == _losses(finished)


def test_a_batch_the_mesh_cannot_split_is_refused_before_any_loading():
    """8 devices split every batch 8 ways: a batch of 4 rows is a config error naming the key,
    not a sharding failure at the first step."""
    import jax

    from jaxtl import config as config_lib
    from jaxtl import runtime

    assert jax.device_count() == 8  # tests run on 8 fake CPU devices (conftest)
    c = config_lib.base_config()
    c.train.batch_size, c.train.eval_batch_size = 4, 16
    with pytest.raises(ValueError, match=r"train.batch_size=4 is not divisible by the 8 batch"):
        runtime.setup_mesh(c)
    c.train.batch_size, c.train.eval_batch_size = 16, 12
    with pytest.raises(ValueError, match=r"train.eval_batch_size=12 is not divisible"):
        runtime.setup_mesh(c)
    c.train.eval_batch_size, c.mesh.data, c.mesh.fsdp = 12, 2, 1  # 2 shards x 4-way tensor
    c.mesh.tensor = 4
    assert runtime.setup_mesh(c).shape["tensor"] == 4
