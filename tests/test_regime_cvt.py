"""Cross-View Training in the self-supervised regime: the launch contract with one compiled step,
the unlabelled loss trains the encoder and auxiliary heads but never the primary heads, and the
views really hide what they claim to hide (BERT masks and BiLSTM halves)."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import build_self_supervised, xla_flags
from flax import nnx

from jaxtl import models, objectives, paths
from jaxtl.configs import self_supervised_cvt as cvt_config
from jaxtl.data import mixture
from jaxtl.models.bilstm import BiLSTMConfig, BiLSTMEncoder
from jaxtl.objectives import cvt
from jaxtl.regimes import self_supervised

REPO = pathlib.Path(__file__).resolve().parents[1]
ALL_VIEWS = cvt.TAGGING_VIEWS + cvt.SENTENCE_VIEWS


def _config(model_dir, **extra):
    c = cvt_config.get_config("tiny")
    c.model.name = str(model_dir)
    c.target.tasks = ("builtin/ner", "builtin/sentiment")
    c.cvt.views = ALL_VIEWS
    for k, v in extra.items():
        node = c
        *parents, leaf = k.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = v
    return c


def test_launch_cvt_writes_contract_files_one_compilation(tiny_bert_dir, tmp_path):
    steps = 6
    wd = tmp_path / "wd"
    cmd = [sys.executable, str(REPO / "launch.py"), "--regime=self_supervised",
           f"--workdir={wd}", f"--config={REPO / 'configs' / 'self_supervised_cvt.py'}:tiny",
           f"--config.model.name={tiny_bert_dir}", f"--config.train.steps={steps}",
           "--config.unlabelled.ratio=0.5", "--config.train.log_every=2"]  # fmt: skip
    env = dict(os.environ, XLA_FLAGS=xla_flags(1))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    for f in ("config.json", "metrics.jsonl", "results.json", "plan.json", "task_counts.json"):
        assert (wd / f).is_file(), f
    assert json.loads((wd / "config.json").read_text())["objective"] == "cvt"
    results = json.loads((wd / "results.json").read_text())
    assert 0.0 <= results["builtin/ner"]["span_f1"] <= 1.0
    assert json.loads((wd / "task_counts.json").read_text()) == {
        "builtin/ner": 4,
        "builtin/corpus": 2,
    }
    records = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    train = {r["step"]: r for r in records if r["split"] == "train"}
    pattern = self_supervised.stream_pattern(0.5)

    def task_of(step):  # the record of step s is the batch drawn at s - 1
        stream = mixture.stream_for_step(step - 1, pattern)
        return "builtin/corpus" if stream == "unlabelled" else "builtin/ner"

    # Every 2 steps, one row per task that stepped in those 2 (its latest step), so the
    # labelled loss shows even when the log step itself is an unlabelled one.
    logged = set()
    for end in range(2, steps + 1, 2):
        logged |= set({task_of(s): s for s in (end - 1, end)}.values())
    assert sorted(train) == sorted(logged) and len(logged) > steps // 2
    for step, r in train.items():
        assert r["task"] == task_of(step)
        assert np.isfinite(r["loss"]) and r["loss"] > 0
    # one program for both streams: the views are inside the unlabelled switch branch
    comp = [r for r in records if r["split"] == "run" and r["task"] == "compilations"][-1]
    assert comp["train"] == 1
    # the auxiliary heads are in the plan (trainable parameters the run created)
    assert "builtin_ner__cvt_forward" in (wd / "plan.json").read_text()


@pytest.fixture(scope="module")
def built(tiny_bert_dir):
    return build_self_supervised(_config(tiny_bert_dir))


def test_cvt_unlabelled_loss_trains_encoder_and_aux_heads_not_primary(built):
    model, targets, unl, loss_fn, _ = built
    batch = {k: jnp.asarray(v) for k, v in next(unl.train_iter).items()}
    batch["task_id"] = jnp.full_like(batch["task_id"], unl.index)
    graphdef, params = nnx.split(model, nnx.Param)

    def f(p):
        total, m = loss_fn(nnx.merge(graphdef, p), batch, nnx.Rngs(dropout=jax.random.key(0)), True)
        return total / jnp.maximum(m["denominator"], 1.0)

    loss, grads = jax.jit(jax.value_and_grad(f))(params)
    grads = paths.flatten(nnx.to_pure_dict(grads))
    assert float(loss) > 1e-4, float(loss)
    norm = lambda pre: sum(float(jnp.sum(g**2)) for p, g in grads.items() if p.startswith(pre))  # noqa: E731
    assert norm("encoder/layers/0/") > 0
    for td in targets:
        views = cvt.TAGGING_VIEWS if td.task.kind == "tagging" else cvt.SENTENCE_VIEWS
        for view in views:
            assert norm(f"heads/{cvt.aux_key(td.key, view)}/") > 0, view
        primary = [g for p, g in grads.items() if p.startswith(f"heads/{td.key}/")]
        assert primary and all(float(jnp.abs(g).max()) == 0.0 for g in primary), td.key


def _tagging_features(model, batch, views, *, hidden_states=None):
    am = batch["attention_mask"]
    if hidden_states is None:
        hidden_states = model.encoder(batch["input_ids"], am).hidden_states
    settings = cvt.Settings({}, no_self_rate=0.5)
    positions = am.astype(bool)
    out = cvt.tagging_views(
        model, batch, set(views), hidden_states, settings=settings, mask_id=103,
        positions=positions, key=jax.random.key(0), train_mode=False,
    )  # fmt: skip
    return {v: np.asarray(f) for v, (f, _) in out.items()}


def _batch(ids, length):
    ids = jnp.asarray(ids, jnp.int32)
    am = jnp.broadcast_to(jnp.arange(ids.shape[1])[None] < length, ids.shape).astype(jnp.int32)
    return {"input_ids": ids * am, "attention_mask": am, "token_type_ids": jnp.zeros_like(ids)}


def _check_directional(model, batch, changed, t):
    """Tokens after ``t`` differ between ``batch`` and ``changed``: views that see only the
    left context agree at and before ``t`` (future: up to t + 1), the others differ there."""
    views = ("forward", "backward", "future", "past")
    a = _tagging_features(model, batch, views)
    b = _tagging_features(model, changed, views)
    tol = 1e-5
    assert np.abs(a["forward"][:, : t + 1] - b["forward"][:, : t + 1]).max() <= tol
    assert np.abs(a["future"][:, : t + 2] - b["future"][:, : t + 2]).max() <= tol
    assert np.abs(a["backward"][:, t] - b["backward"][:, t]).max() > 1e-3
    assert np.abs(a["past"][:, t] - b["past"][:, t]).max() > 1e-3


def test_bert_left_context_view_cannot_see_right_context(built):
    model = built[0]
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 2000, (2, 12))
    other = ids.copy()
    t = 5
    other[:, t + 1 :] = rng.integers(2000, 3000, (2, 12 - t - 1))
    batch, changed = _batch(ids, 10), _batch(other, 10)
    _check_directional(model, batch, changed, t)

    # ... while the full (bidirectional) view at t does see the change
    def full(b):
        return np.asarray(model.encoder(b["input_ids"], b["attention_mask"]).last_hidden_state)

    assert np.abs(full(batch)[:, t] - full(changed)[:, t]).max() > 1e-3
    # the right-context view mirrors it: changing the left part leaves positions >= t alone
    left = ids.copy()
    left[:, :t] = rng.integers(2000, 3000, (2, t))
    b = _tagging_features(model, _batch(left, 10), ("backward", "past"))
    a = _tagging_features(model, batch, ("backward", "past"))
    assert np.abs(a["backward"][:, t:10] - b["backward"][:, t:10]).max() <= 1e-5
    assert np.abs(a["past"][:, t - 1 : 10] - b["past"][:, t - 1 : 10]).max() <= 1e-5


def test_bert_view_pass_equals_encoder_under_padding_mask(built):
    """The view pass re-implements the encoder's forward with another mask: same numbers."""
    model = built[0]
    batch = _batch(np.random.default_rng(1).integers(1000, 3000, (2, 9)), 7)
    am = batch["attention_mask"]
    ref = model.encoder(batch["input_ids"], am, batch["token_type_ids"]).hidden_states
    mine = cvt.bert_hidden_states(
        model.encoder, batch["input_ids"], am.astype(bool)[:, None, None, :],
        batch["token_type_ids"], deterministic=True, rngs=None,
    ).hidden_states  # fmt: skip
    assert len(ref) == len(mine)
    for r, m in zip(ref, mine, strict=True):
        np.testing.assert_allclose(np.asarray(m), np.asarray(r), atol=1e-6)


def test_no_self_view_hides_the_word_at_chosen_positions(built):
    model = built[0]
    batch = _batch(np.random.default_rng(2).integers(1000, 3000, (2, 10)), 10)
    settings = cvt.Settings({}, no_self_rate=0.5)
    args = dict(settings=settings, mask_id=103, positions=batch["attention_mask"].astype(bool),
                key=jax.random.key(3), train_mode=False)  # fmt: skip
    f, chosen = cvt.tagging_views(model, batch, {"no_self"}, (), **args)["no_self"]
    chosen = np.asarray(chosen)
    assert 0 < chosen.sum() < chosen.size
    # another word at a chosen position changes nothing the view computes there
    other = dict(batch)
    ids = np.asarray(batch["input_ids"]).copy()
    ids[chosen] = 1500
    other["input_ids"] = jnp.asarray(ids)
    g, _ = cvt.tagging_views(model, other, {"no_self"}, (), **args)["no_self"]
    np.testing.assert_allclose(np.asarray(g), np.asarray(f), atol=1e-6)


def test_bilstm_views_are_first_layer_halves_and_hide_their_side():
    cfg = BiLSTMConfig(vocab_size=50, embed_size=8, hidden_size=6, num_layers=2, dropout=0.0)
    enc = BiLSTMEncoder(cfg, rngs=nnx.Rngs(0))
    model = models.TransferModel(enc, {}, None)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 25, (2, 10))
    other = ids.copy()
    t = 4
    other[:, t + 1 :] = rng.integers(25, 50, (2, 10 - t - 1))
    batch, changed = _batch(ids, 8), _batch(other, 8)
    _check_directional(model, batch, changed, t)
    f = _tagging_features(model, batch, cvt.TAGGING_VIEWS)
    assert f["forward"].shape[-1] == 6 and f["no_self"].shape[-1] == 12
    # future at t+1 is forward at t; no_self = [future, past]
    np.testing.assert_array_equal(f["future"][:, t + 1], f["forward"][:, t])
    np.testing.assert_array_equal(f["no_self"], np.concatenate([f["future"], f["past"]], -1))
    # past at the last real token looks at no real token: zero features
    assert np.all(f["past"][:, 7] == 0)


def test_sentence_views_drop_a_span_or_subset_and_keep_specials():
    specials = np.asarray([0, 101, 102], np.int32)
    ids = np.asarray([[101, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 102, 0, 0]], np.int32)
    am = (ids != 0).astype(np.int32)
    batch = {"input_ids": jnp.asarray(ids), "attention_mask": jnp.asarray(am),
             "token_type_ids": jnp.zeros_like(jnp.asarray(ids)),
             "example_weight": jnp.ones((1,), jnp.float32)}  # fmt: skip

    maskable = objectives.real_token_mask(batch, specials)
    settings = cvt.Settings({}, span_fraction=0.3, subset_drop=0.5)
    for seed in range(5):
        keep = np.asarray(
            cvt.sentence_keep(jax.random.key(seed), batch, "span", settings, maskable)
        )
        dropped = np.flatnonzero(am[0].astype(bool) & ~keep[0])
        assert len(dropped) == 3  # ceil(0.3 * 10) real words
        assert np.all(np.diff(dropped) == 1) and dropped.min() >= 1 and dropped.max() <= 10
        new_ids, new_mask, _ = cvt.compact(batch, jnp.asarray(keep), 0)
        n = int(new_mask.sum())
        assert n == 9 and np.asarray(new_mask)[0, :n].all()  # right-padded after compaction
        expect = ids[0][keep[0]]
        np.testing.assert_array_equal(np.asarray(new_ids)[0, :n], expect)
        assert expect[0] == 101 and expect[-1] == 102
    keep = np.asarray(cvt.sentence_keep(jax.random.key(0), batch, "subset", settings, maskable))
    assert keep[0, 0] and keep[0, 11] and not keep[0, 12:].any()
    assert 0 < (~keep[0, 1:11]).sum() < 10


def test_cvt_config_errors_name_the_key(tiny_bert_dir):
    with pytest.raises(ValueError, match="cvt.views"):
        build_self_supervised(_config(tiny_bert_dir, **{"cvt.views": ("forward", "sideways")}))
    with pytest.raises(ValueError, match="no view for target builtin/sentiment"):
        build_self_supervised(
            _config(
                tiny_bert_dir, **{"cvt.views": ("forward",), "target.tasks": ("builtin/sentiment",)}
            )
        )
