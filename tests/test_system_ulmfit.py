"""ULMFiT: the AWD-LSTM's regularisers (weight drop, embedding and variational dropout; all off at
evaluation), concat pooling, and the three stages — general LM, target-text LM fine-tuning,
classifier with gradual unfreezing, discriminative LRs and STLR — as plan.json records them."""

import json
import os
import pathlib
import subprocess
import sys
import tempfile

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import kill_after_checkpoint, small_config, xla_flags
from flax import nnx

from jaxtl.configs import unsupervised_sequential_ulmfit as ulmfit_config
from jaxtl.models.awd_lstm import AWDLSTMConfig, AWDLSTMEncoder, locked_dropout
from jaxtl.models.heads import ClassificationHead, pool
from jaxtl.objectives.language_model import kind_for
from jaxtl.regimes import unsupervised_sequential

REPO = pathlib.Path(__file__).resolve().parents[1]
V = 50
NO_DROPOUT = dict(embed_dropout=0.0, input_dropout=0.0, hidden_dropout=0.0, output_dropout=0.0,
                  weight_dropout=0.0)  # fmt: skip


def _encoder(**dropouts):
    cfg = AWDLSTMConfig(vocab_size=V, embed_size=8, hidden_size=12, num_layers=3,
                        **{**NO_DROPOUT, **dropouts})  # fmt: skip
    return AWDLSTMEncoder(cfg, rngs=nnx.Rngs(0))


IDS = jnp.asarray(np.random.RandomState(0).randint(1, V, (3, 7)), jnp.int32)


def _run(enc, train, key=1):
    kw = {"deterministic": False, "rngs": nnx.Rngs(dropout=key)} if train else {}
    return enc(IDS, jnp.ones_like(IDS), **kw)


def test_every_dropout_is_off_at_eval_and_on_in_training():
    enc = _encoder(embed_dropout=0.3, input_dropout=0.3, hidden_dropout=0.3, output_dropout=0.3,
                   weight_dropout=0.3)  # fmt: skip
    a = _run(enc, False).hidden_states
    b = enc(IDS, jnp.ones_like(IDS), deterministic=True, rngs=nnx.Rngs(dropout=7)).hidden_states
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)  # exactly: no randomness at evaluation
    t1, t2 = _run(enc, True, 1).last_hidden_state, _run(enc, True, 2).last_hidden_state
    assert float(jnp.abs(t1 - a[-1]).max()) > 0 and float(jnp.abs(t1 - t2).max()) > 0
    # with every rate at 0, training computes exactly what evaluation does
    plain = _encoder()
    np.testing.assert_array_equal(_run(plain, True).last_hidden_state, _run(plain, False)[0][-1])


def test_variational_dropout_reuses_one_mask_at_every_time_step():
    x = jnp.ones((4, 9, 6))
    y = np.asarray(locked_dropout(x, 0.5, deterministic=False, rngs=nnx.Rngs(dropout=3)))
    assert set(np.unique(y)) == {0.0, 2.0}  # inverted: kept values scaled by 1 / (1 - p)
    assert (y == y[:, :1]).all()  # the same mask at every t
    assert not (y == y[:1]).all()  # but not the same for every sequence
    # through the encoder: the embeddings layer 0 reads are zeroed in the same features at all t
    enc = _encoder(input_dropout=0.5)
    h0 = np.asarray(_run(enc, True).hidden_states[0])
    zero = h0 == 0.0
    assert zero.any() and (zero == zero[:, :1]).all()
    np.testing.assert_allclose(h0[~zero], 2.0 * np.asarray(_run(enc, False)[0][0])[~zero], 1e-6)


def test_embedding_dropout_drops_whole_word_types():
    enc = _encoder(embed_dropout=0.5)
    ids = jnp.asarray([[5, 6, 5, 7, 6, 5, 8, 9]] * 2, jnp.int32)
    x = np.asarray(enc.embed(ids, deterministic=False, rngs=nnx.Rngs(dropout=4)))
    dropped = (x == 0).all(-1)
    for tok in (5, 6):
        where = np.asarray(ids) == tok
        assert dropped[where].all() or not dropped[where].any(), tok  # a type, everywhere
    assert dropped.any() and not dropped.all()


def test_weight_drop_masks_w_hh_once_per_sequence_in_training_only():
    enc = _encoder(weight_dropout=0.5)
    layer = enc.layers[1]
    w = np.asarray(layer.hh[...])
    np.testing.assert_array_equal(layer.recurrent_kernel(deterministic=True, rngs=None), w)
    dropped = np.asarray(layer.recurrent_kernel(deterministic=False, rngs=nnx.Rngs(dropout=5)))
    zero = dropped == 0
    assert 0.4 < zero.mean() < 0.6
    np.testing.assert_allclose(dropped[~zero], 2.0 * w[~zero], rtol=1e-6)
    # The training output is the evaluation output of the layer with that one dropped matrix:
    # the same W_hh mask at every time step (W_ih untouched).
    x = jnp.asarray(np.random.RandomState(1).randn(2, 6, 12), jnp.float32)
    train = layer(x, deterministic=False, rngs=nnx.Rngs(dropout=5))
    assert float(jnp.abs(train - layer(x)).max()) > 1e-4
    layer.hh[...] = jnp.asarray(dropped)
    np.testing.assert_allclose(train, layer(x), rtol=1e-5, atol=1e-6)


def test_the_awd_lstm_is_a_causal_lm():
    enc = _encoder()
    assert kind_for(enc, "auto") == "clm"
    ids = np.asarray(IDS).copy()
    ids[:, 4] = ids[:, 4] % (V - 1) + 1
    a, b = _run(enc, False).last_hidden_state, enc(jnp.asarray(ids)).last_hidden_state
    change = np.abs(np.asarray(a - b)).max(-1)
    assert change[:, :4].max() == 0 and change[:, 4:].min() > 0


def test_concat_pooling_is_last_max_mean_over_real_tokens_only():
    rng = np.random.RandomState(2)
    feats = rng.randn(2, 5, 3).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int32)
    got = np.asarray(pool(jnp.asarray(feats), jnp.asarray(mask), "concat"))
    assert got.shape == (2, 9)
    np.testing.assert_allclose(got[0, :3], feats[0, 2])
    np.testing.assert_allclose(got[0, 3:6], feats[0, :3].max(0))
    np.testing.assert_allclose(got[0, 6:], feats[0, :3].mean(0), rtol=1e-6)
    # padding never counts, whatever its values (huge ones would win a max)
    noisy = feats.copy()
    noisy[0, 3:] = 1e6
    np.testing.assert_array_equal(pool(jnp.asarray(noisy), jnp.asarray(mask), "concat"), got)
    head = ClassificationHead(3, 2, "concat", 50, 0.0, rngs=nnx.Rngs(0))
    assert head.dense.in_features == 9
    assert head(jnp.asarray(feats), jnp.asarray(mask)).shape == (2, 2)


def _ulmfit_tiny(**overrides):
    """The :tiny config on the built-in corpus and sentiment task with a small AWD-LSTM."""
    c = ulmfit_config.get_config("tiny")
    c.unlock()
    # two layers (three adapt phases): fewer programs to compile than the config's three
    return small_config(c, "new:jaxtl_awd_lstm,embed_size=8,hidden_size=12,num_layers=2", **{
        "pretrain.corpus": "builtin/corpus", "target.tasks": ("builtin/sentiment",),
        "pretrain.steps": 2, "lm_finetune.steps": 2, "train.steps": 8, **overrides,
    })  # fmt: skip


def test_three_stages_in_plan_json_with_their_trainable_sets_and_lrs():
    wd = pathlib.Path(tempfile.mkdtemp()) / "wd"
    cfg = _ulmfit_tiny()
    unsupervised_sequential.run(cfg, str(wd))
    phases = json.loads((wd / "plan.json").read_text())["phases"]
    assert [(ph["stage"], ph["phase"]) for ph in phases] == [
        ("pretrain", "finetune"),
        ("lm_finetune", "finetune"),
        ("adapt", "gradual_unfreezing/top_1"),
        ("adapt", "gradual_unfreezing/top_2"),
        ("adapt", "gradual_unfreezing/all"),
    ]
    groups = [{g["name"]: g for g in ph["groups"]} for ph in phases]
    units = ("embeddings", "layer_0", "layer_1")
    lr, d = cfg.pretrain.optim.lr, cfg.lm_finetune.optim.discriminative
    # 1. general-domain LM: the encoder and the LM head's bias at one LR; the classifier frozen
    assert all(groups[0][u]["lr"] == lr for u in units)
    assert groups[0]["unused_while_pretraining"]["frozen"]
    # 2. target-domain LM: discriminative LRs, the top layer at lr, each one below / 2.6
    ft_lr = cfg.lm_finetune.optim.lr
    for i, u in enumerate(reversed(units)):
        assert groups[1][u]["lr"] == pytest.approx(ft_lr * d**i), u
    assert groups[1]["unused_while_pretraining"]["frozen"]
    # 3. classifier: the LM head dropped; one more layer thawed per phase, top down
    a_lr = cfg.optim.lr
    for k, g in enumerate(groups[2:]):
        assert g["lm_head_dropped"]["frozen"] and not g["new"]["frozen"]
        thawed = [u for u in units if not g[u]["frozen"]]
        assert thawed == list(units[2 - k :] if k < 2 else units), k
        for i, u in enumerate(reversed(units)):
            if not g[u]["frozen"]:
                assert g[u]["lr"] == pytest.approx(a_lr * cfg.optim.discriminative**i), (k, u)
    # STLR in both fine-tuning stages: the logged LR rises, then falls
    recs = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    logged = [r["lr"] for r in recs if r.get("split") == "train" and "lr" in r]
    adapt = logged[-cfg.train.steps :]
    peak = int(np.argmax(adapt))
    assert 0 < peak < len(adapt) - 1 and adapt[-1] < adapt[peak]
    # the middle stage's corpus is the target task's own text, with a dev perplexity
    results = json.loads((wd / "results.json").read_text())
    assert np.isfinite(results["builtin/sentiment/text"]["perplexity"])
    assert "builtin/corpus" in results and "accuracy" in results["builtin/sentiment"]


@pytest.mark.slow  # about two minutes on 2 shared cores, most of it compiling 6 train programs
def test_tiny_config_end_to_end_through_launch(data_dir, tmp_path):
    wd = tmp_path / "wd"
    cmd = [sys.executable, str(REPO / "launch.py"), "--regime=unsupervised_sequential",
           f"--config={REPO / 'configs' / 'unsupervised_sequential_ulmfit.py'}:tiny",
           f"--config.data.dir={data_dir}", f"--workdir={wd}"]  # fmt: skip
    env = dict(os.environ, XLA_FLAGS=xla_flags(1))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    results = json.loads((wd / "results.json").read_text())
    assert {"wikitext", "sst2/text", "sst2"} <= set(results), results
    stages = [ph["stage"] for ph in json.loads((wd / "plan.json").read_text())["phases"]]
    assert stages[:2] == ["pretrain", "lm_finetune"] and set(stages[2:]) == {"adapt"}


def _train_losses(work: pathlib.Path) -> dict[int, tuple[str, str, float]]:
    rows = [json.loads(x) for x in (work / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: (r["stage"], r["task"], r["loss"]) for r in rows if r["split"] == "train"}


def kill_and_resume(cmd: list[str], ref: pathlib.Path, work: pathlib.Path, after: int) -> None:
    """Run ``cmd`` into ``work``, kill -9 it once a checkpoint at step >= ``after`` exists, run it
    again: every step's stage, stream and loss equal the uninterrupted run's in ``ref``."""
    cmd = [c if not c.startswith("--workdir=") else f"--workdir={work}" for c in cmd]
    env = dict(os.environ, XLA_FLAGS=xla_flags(1))
    kill_after_checkpoint(cmd, work, after, env=env, timeout=900)
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    got, want = _train_losses(work), _train_losses(ref)
    assert sorted(got) == sorted(want)
    assert got == want  # exact: the same batches, dropout masks and DropConnect masks


@pytest.mark.slow  # three launches of the three-stage run: a few minutes on 2 shared cores
def test_kill_and_resume_continues_bit_identically(tmp_path):
    """kill -9 inside the target-text LM stage (after its step-10 checkpoint), re-run: the same
    losses at every step of all three stages (AWD-LSTM dropouts drawn identically)."""
    ref = tmp_path / "ref"
    cmd = [sys.executable, str(REPO / "launch.py"), "--regime=unsupervised_sequential",
           f"--config={REPO / 'configs' / 'unsupervised_sequential_ulmfit.py'}:tiny",
           f"--workdir={ref}", "--config.pretrain.corpus=builtin/corpus",
           "--config.target.tasks=('builtin/sentiment',)", "--config.pretrain.steps=6",
           "--config.lm_finetune.steps=6", "--config.train.steps=6",
           "--config.model.name=new:jaxtl_awd_lstm,embed_size=8,hidden_size=12,num_layers=2"]  # fmt: skip
    env = dict(os.environ, XLA_FLAGS=xla_flags(1))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert len(_train_losses(ref)) == 18
    kill_and_resume(cmd, ref, tmp_path / "wd", after=10)
