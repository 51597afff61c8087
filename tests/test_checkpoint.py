"""Checkpoints: restore across device counts, and params-only init into a different structure."""

import logging
import os
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest
from conftest import xla_flags
from flax import nnx

from jaxtl import checkpoint as ckpt_lib
from jaxtl import mesh as mesh_lib
from jaxtl import models
from jaxtl import step as step_lib


def _model(tiny_bert_dir, *, head_labels=2, extra_layer=False, seed=0):
    pre = models.from_pretrained(str(tiny_bert_dir))
    enc = pre.model
    if extra_layer:
        cfg = dict(pre.hf_config, num_hidden_layers=pre.hf_config["num_hidden_layers"] + 1)
        enc = models.build_encoder("bert", cfg, rngs=nnx.Rngs(seed + 7))
    heads = {"a": models.ClassificationHead(enc.hidden_size, head_labels, rngs=nnx.Rngs(seed))}
    return models.TransferModel(enc, heads)


def _sharded_state(model, mesh, tx):
    _, st = nnx.split(model, nnx.Param)
    host = jax.tree.map(np.asarray, nnx.to_pure_dict(st))
    psh = mesh_lib.param_shardings(host, mesh_lib.logical_specs(st), mesh)
    state = step_lib.init_state(jax.device_put(host, psh), tx, seed=3)
    shardings = step_lib.TrainState(
        step=mesh_lib.replicated(mesh),
        params=psh,
        opt_state=mesh_lib.like_params_shardings(state.opt_state, host, psh, mesh),
        rng=mesh_lib.replicated(mesh),
    )
    return jax.device_put(state, shardings)


def _assert_same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.array_equal(np.asarray(x), np.asarray(y))


def test_restore_8_devices_to_1_and_back(tiny_bert_dir, tmp_path):
    tx = optax.adamw(1e-3)
    eight = mesh_lib.make_mesh(1, 8, 1)
    one = mesh_lib.make_mesh(1, 1, 1, devices=jax.devices()[:1])
    state8 = _sharded_state(_model(tiny_bert_dir), eight, tx)
    # give the moments non-trivial values so a wrong restore would show
    state8 = state8.replace(opt_state=jax.tree.map(lambda x: x + 1, state8.opt_state))
    ck = ckpt_lib.Checkpointer(tmp_path / "a")
    ck.save(7, state8, {"stage": 0, "feed": {"epoch": 1}})
    target1 = _sharded_state(_model(tiny_bert_dir, seed=1), one, tx)
    restored1, meta = ck.restore(7, target1)
    assert meta == {"stage": 0, "feed": {"epoch": 1}}
    _assert_same(restored1.params, state8.params)
    _assert_same(restored1.opt_state, state8.opt_state)
    k = restored1.params["encoder"]["layers"][0]["mlp"]["intermediate"]["kernel"]
    assert len(k.sharding.device_set) == 1
    # and 1 -> 8: the big kernels come back FSDP-sharded
    ck2 = ckpt_lib.Checkpointer(tmp_path / "b")
    ck2.save(3, restored1, {})
    target8 = _sharded_state(_model(tiny_bert_dir, seed=2), eight, tx)
    restored8, _ = ck2.restore(3, target8)
    _assert_same(restored8.params, state8.params)
    k8 = restored8.params["encoder"]["layers"][0]["mlp"]["intermediate"]["kernel"]
    assert "fsdp" in str(k8.sharding.spec)


def test_a_checkpoint_saved_on_8_devices_reads_back_whole_on_1(tiny_bert_dir, tmp_path):
    """A resume first checks that the latest checkpoint reads back whole; on another number of
    devices (a job resumed on a smaller slice, or on a CPU) that check must not take the good
    checkpoint for a damaged one and move it aside. Saved here on 8 devices, checked in a
    process that has 1."""
    eight = mesh_lib.make_mesh(1, 8, 1)
    ck = ckpt_lib.Checkpointer(tmp_path / "checkpoints")
    ck.save(7, _sharded_state(_model(tiny_bert_dir), eight, optax.adamw(1e-3)), {"stage": 0})
    ck.close()
    check = (
        "import sys, jax; from jaxtl import checkpoint as c; assert jax.device_count() == 1; "
        "ck = c.Checkpointer(sys.argv[1]); print(ck.verify(7)); print(ck.latest_good_step())"
    )
    p = subprocess.run([sys.executable, "-c", check, str(tmp_path / "checkpoints")],
                       env=dict(os.environ, XLA_FLAGS=xla_flags(1)), capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.split() == ["None", "7"], p.stdout + p.stderr[-3000:]
    assert not (tmp_path / "corrupt_checkpoints").exists()


def _saved_run(tiny_bert_dir, workdir):
    """A run's step-5 checkpoint of the tiny model (seed 0): the source of a params-only init."""
    one = mesh_lib.make_mesh(1, 1, 1, devices=jax.devices()[:1])
    src = _sharded_state(_model(tiny_bert_dir), one, optax.adamw(1e-3))
    ck = ckpt_lib.Checkpointer(workdir / "checkpoints")
    ck.save(5, src, {})
    ck.close()
    return src


def test_params_only_init_reports_head_swap_and_extra_layer(tiny_bert_dir, tmp_path, monkeypatch):
    src = _saved_run(tiny_bert_dir, tmp_path / "run")

    # a head with 3 labels instead of 2 and one more encoder layer
    target = _model(tiny_bert_dir, head_labels=3, extra_layer=True, seed=5)
    target_params = nnx.to_pure_dict(nnx.state(target, nnx.Param))
    out, rep = ckpt_lib.load_params(tmp_path / "run", target_params)
    assert sorted(p for p, *_ in rep.mismatched) == [
        "heads/a/classifier/bias",
        "heads/a/classifier/kernel",
    ]
    assert rep.new and all(p.startswith("encoder/layers/2/") for p in rep.new)
    assert rep.unused == []
    assert "encoder/layers/1/attention/query/kernel" in rep.loaded
    src_q = np.asarray(src.params["encoder"]["layers"][1]["attention"]["query"]["kernel"])
    assert np.array_equal(
        np.asarray(out["encoder"]["layers"][1]["attention"]["query"]["kernel"]), src_q
    )
    # new and mismatched params keep the target's fresh initialisation
    new_k = target_params["encoder"]["layers"][2]["attention"]["query"]["kernel"]
    assert np.array_equal(
        np.asarray(out["encoder"]["layers"][2]["attention"]["query"]["kernel"]), np.asarray(new_k)
    )
    assert out["heads"]["a"]["classifier"]["kernel"].shape[-1] == 3
    assert rep.summary().startswith(f"loaded {len(rep.loaded)}")
    # model.init_from as a user types it, relative to the current directory, and naming one
    # step's folder: the same params.
    monkeypatch.chdir(tmp_path)
    again, rep2 = ckpt_lib.load_params("run/checkpoints/5", target_params)
    assert rep2.loaded == rep.loaded
    assert np.array_equal(
        np.asarray(again["encoder"]["layers"][1]["attention"]["query"]["kernel"]), src_q
    )


def test_params_only_init_skips_the_paths_asked_to_stay_fresh(tiny_bert_dir, tmp_path, caplog):
    """``model.init_from_skip``: a head the checkpoint holds in the same shape keeps the new
    model's own (seeded) initialisation, so seeds on a shared checkpoint get their own heads."""
    src = _saved_run(tiny_bert_dir, tmp_path / "run")
    target = _model(tiny_bert_dir, seed=7)
    target_params = nnx.to_pure_dict(nnx.state(target, nnx.Param))
    with caplog.at_level(logging.WARNING):
        out, rep = ckpt_lib.load_params(tmp_path / "run", target_params, skip=("heads/a/",))
    # A params-only load is quiet: no orbax "Metadata file does not exist" (the step metadata
    # is one folder above the state it reads), which jaxtl.load users took for damage.
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sorted(rep.skipped) == ["heads/a/classifier/bias", "heads/a/classifier/kernel"]
    assert not any(p.startswith("heads/") for p in rep.loaded)
    assert "encoder/layers/0/attention/query/kernel" in rep.loaded
    fresh = np.asarray(target_params["heads"]["a"]["classifier"]["kernel"])
    saved = np.asarray(src.params["heads"]["a"]["classifier"]["kernel"])
    assert not np.array_equal(fresh, saved)  # the two seeds' heads differ to begin with
    assert np.array_equal(np.asarray(out["heads"]["a"]["classifier"]["kernel"]), fresh)
    assert np.array_equal(
        np.asarray(out["encoder"]["layers"][0]["attention"]["query"]["kernel"]),
        np.asarray(src.params["encoder"]["layers"][0]["attention"]["query"]["kernel"]),
    )
    assert rep.to_json()["skipped"] == rep.skipped and "skipped 2" in rep.summary()
    # a pattern that matches nothing is a typo, not a silent full load
    with pytest.raises(ValueError, match=r"init_from_skip: 'heads/b/' matches no parameter"):
        ckpt_lib.load_params(tmp_path / "run", target_params, skip=("heads/b/",))


def test_init_from_skip_must_be_a_tuple_of_regular_expressions():
    from jaxtl import config as config_lib

    c = config_lib.base_config()
    c.model.init_from_skip = ("heads/rte/",)
    with pytest.raises(ValueError, match=r"init_from_skip=\('heads/rte/',\): set model.init_from"):
        config_lib.validate(c)
    c.model.init_from = "runs/source"
    c.model.init_from_skip = ("heads/[rte/",)
    with pytest.raises(ValueError, match=r"model.init_from_skip: 'heads/\[rte/' is not a regular"):
        config_lib.validate(c)
    c.model.init_from_skip = ("heads/rte/",)
    config_lib.validate(c)


def _files(step_dir):
    return sorted(p.relative_to(step_dir) for p in step_dir.rglob("*") if p.is_file())


def test_params_saved_again_at_the_same_step_are_hard_links_and_outlive_the_source(tmp_path):
    """``save_params(..., same_as=A)`` with A's params at that step: every file is a hard link
    to A's (one copy on disk) and reads back the same; when A later moves on to other params,
    B still holds its own; linking a newer step keeps one step, like a save."""
    p5 = {"enc": {"w": np.arange(12, dtype=np.float32).reshape(3, 4)}, "b": np.ones(3, np.int32)}
    p7 = jax.tree.map(lambda x: x * 2, p5)
    a, b = tmp_path / "best" / "stage", tmp_path / "best" / "stage-task"
    ckpt_lib.save_params(a, 5, p5)
    ckpt_lib.save_params(b, 5, p5, same_as=a)
    files = _files(a / "5")
    assert files and files == _files(b / "5")
    for f in files:
        assert (a / "5" / f).stat().st_ino == (b / "5" / f).stat().st_ino
    _assert_same(ckpt_lib.load_params(b, jax.tree.map(np.zeros_like, p5))[0], p5)

    ckpt_lib.save_params(a, 7, p7)  # the stage's best moves on: the task's best stays at 5
    assert not (a / "5").exists()
    _assert_same(ckpt_lib.load_params(b, jax.tree.map(np.zeros_like, p5))[0], p5)
    ckpt_lib.save_params(b, 7, p7, same_as=a)
    assert sorted(x.name for x in b.iterdir()) == ["7"]
    _assert_same(ckpt_lib.load_params(b, jax.tree.map(np.zeros_like, p5))[0], p7)


def test_params_with_no_finished_source_step_are_saved_not_linked(tmp_path):
    p = {"w": np.arange(4, dtype=np.float32)}
    ckpt_lib.save_params(tmp_path / "b", 3, p, same_as=tmp_path / "missing")
    assert (tmp_path / "b" / "3").is_dir()
    _assert_same(ckpt_lib.load_params(tmp_path / "b", {"w": np.zeros(4, np.float32)})[0], p)


def _small_state(value=1.0):
    params = {"w": jax.numpy.full((64, 32), value), "b": jax.numpy.arange(32.0)}
    return step_lib.TrainState(
        step=jax.numpy.int32(5),
        params=params,
        opt_state=(jax.tree.map(jax.numpy.zeros_like, params),),
        rng=jax.numpy.zeros(2, jax.numpy.uint32),
    )


def _hold(monkeypatch, name):
    """Hold ``ckpt_lib.<name>`` when it is called (in the background writer's thread) until the
    test lets it go: (an Event set once it is called, the Event that releases it)."""
    import threading

    called, release = threading.Event(), threading.Event()
    real = getattr(ckpt_lib, name)

    def held(*a, **k):
        called.set()
        assert release.wait(30)
        return real(*a, **k)

    monkeypatch.setattr(ckpt_lib, name, held)
    return called, release


def _overwrite_donated(state):
    """Three training-like steps that donate ``state`` and write -7 into every param."""
    step = jax.jit(
        lambda s: s.replace(params=jax.tree.map(lambda p: p * 0 - 7, s.params)), donate_argnums=0
    )
    for _ in range(3):
        state = step(state)
    return jax.block_until_ready(state)


def test_an_async_save_returns_before_it_is_written_and_keeps_the_values_of_its_step(
    tmp_path, monkeypatch
):
    """``save`` returns while the checkpoint is still being finished (held here inside the
    checksum hashing, which would deadlock a synchronous save: it runs under a timeout); the
    steps after it donate and overwrite the state and the loop changes the metadata's dicts,
    yet the step reads back with the values, metadata and checksums it was saved with."""
    import threading

    hashing, release = _hold(monkeypatch, "checksums")
    state = _small_state()
    want = jax.tree.map(np.array, state)
    ck = ckpt_lib.Checkpointer(tmp_path / "ck", async_save=True)
    meta = {"feed": 1, "best": {"a": 0.5}}
    saver = threading.Thread(target=ck.save, args=(5, state, meta))
    saver.start()
    saver.join(timeout=20)
    assert not saver.is_alive(), "save waited for its checkpoint to be written"
    assert hashing.wait(20)
    assert not (tmp_path / "ck" / "5" / ckpt_lib.CHECKSUMS).exists()  # still in flight
    state = _overwrite_donated(state)
    meta["best"]["b"], meta["feed"] = 0.7, 9  # the loop's records move on meanwhile
    release.set()
    ck.wait_until_finished()
    assert (tmp_path / "ck" / "5" / ckpt_lib.CHECKSUMS).exists()
    assert ck.verify(5) is None
    got, saved_meta = ck.restore(5, want)
    _assert_same(got, want)
    assert saved_meta == {"feed": 1, "best": {"a": 0.5}}
    ck.close()


def test_an_async_save_that_fails_in_the_background_raises_at_the_next_wait(tmp_path, monkeypatch):
    """A failure while the checkpoint is written in the background is not lost: the next
    ``save`` (or ``wait_until_finished``, ``close``) raises it, and the earlier step stays."""
    import errno

    ck = ckpt_lib.Checkpointer(tmp_path / "ck", async_save=True)
    ck.save(4, _small_state(1.0), {})
    ck.wait_until_finished()

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(ckpt_lib.fileio, "write_atomic", full)
    ck.save(8, _small_state(2.0), {})  # returns: the failure comes in the background
    with pytest.raises(OSError, match="No space left"):
        ck.save(12, _small_state(3.0), {})
    monkeypatch.undo()
    ck.close()  # the failure was raised once; nothing more is pending
    # orbax committed step 8 before its checksums failed: it reads back (without them), as a
    # step killed between the two does; step 12 was never started.
    again = ckpt_lib.Checkpointer(tmp_path / "ck")
    assert again.manager.all_steps() == [4, 8] and again.latest_good_step() == 8
    assert not (tmp_path / "ck" / "8" / ckpt_lib.CHECKSUMS).exists()
    again.close()


def test_best_params_written_in_the_background_keep_the_values_of_their_step(tmp_path, monkeypatch):
    """``ParamsWriter(background=True).write`` returns while the params are still being written
    (held here inside ``save_params``); the steps after it donate and overwrite them, yet both
    folders read back the values of the step written, the second one linked to the first. A
    wait for a later step's checkpoint returns at once (``before_step``); any other wait
    blocks until the write is on disk."""
    import threading

    writing, release = _hold(monkeypatch, "save_params")
    state = _small_state()
    want = jax.tree.map(np.array, state.params)
    writer = ckpt_lib.ParamsWriter(background=True)
    folders = [tmp_path / "best" / "s", tmp_path / "best" / "s-t"]
    caller = threading.Thread(target=writer.write, args=(5, state.params, folders))
    caller.start()
    caller.join(timeout=20)
    assert not caller.is_alive(), "write waited for the params to reach the disk"
    assert writing.wait(20)
    writer.wait_until_finished(before_step=5)  # this step's own checkpoint does not wait
    assert ckpt_lib.saved_params_steps(folders[0]) == []
    state = _overwrite_donated(state)
    waiter = threading.Thread(target=writer.wait_until_finished, kwargs={"before_step": 6})
    waiter.start()
    waiter.join(timeout=1)
    assert waiter.is_alive(), "a later step's checkpoint did not wait for the write"
    release.set()
    waiter.join(timeout=30)
    assert not waiter.is_alive()
    for where in folders:
        assert ckpt_lib.saved_params_steps(where) == [5]
        _assert_same(ckpt_lib.load_params(where, jax.tree.map(np.zeros_like, want))[0], want)
    written = [p for p in (folders[0] / "5").rglob("*") if p.is_file()]
    assert written  # written once; the task's folder links to it
    for f in written:
        linked = folders[1] / "5" / f.relative_to(folders[0] / "5")
        assert f.stat().st_ino == linked.stat().st_ino


def test_best_params_failing_in_the_background_raise_at_the_next_wait(tmp_path, monkeypatch):
    import errno

    def full(directory, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(directory))

    writer = ckpt_lib.ParamsWriter(background=True)
    writer.write(3, {"w": np.ones(4, np.float32)}, [tmp_path / "ok"])
    monkeypatch.setattr(ckpt_lib, "save_params", full)
    writer.write(4, {"w": np.zeros(4, np.float32)}, [tmp_path / "b"])  # returns
    with pytest.raises(OSError, match="No space left"):
        writer.wait_until_finished()
    writer.wait_until_finished()  # raised once; nothing pending
    assert ckpt_lib.saved_params_steps(tmp_path / "ok") == [3]
    assert ckpt_lib.saved_params_steps(tmp_path / "b") == []
