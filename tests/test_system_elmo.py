"""ELMo: the BiLSTM biLM (separate forward and backward stacks, one tied softmax), its loss, its
directions' blindness to the tokens they predict, ELMo's representation for the target model,
``new:`` model names, and the config end to end."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import xla_flags
from flax import nnx

from jaxtl import losses, models
from jaxtl.configs import unsupervised_sequential_elmo as elmo_config
from jaxtl.data.batch import IGNORE
from jaxtl.data.tokenize import causal_labels
from jaxtl.models import scratch
from jaxtl.models.bilstm import BiLMHead, BiLSTMConfig, BiLSTMEncoder
from jaxtl.objectives.language_model import kind_for

REPO = pathlib.Path(__file__).resolve().parents[1]
V = 40


def _bilm(seed=0, independent=True, dropout=0.0):
    cfg = BiLSTMConfig(vocab_size=V, embed_size=12, hidden_size=16, num_layers=2,
                       dropout=dropout, independent_directions=independent)  # fmt: skip
    return models.TransferModel(
        BiLSTMEncoder(cfg, rngs=nnx.Rngs(seed)),
        {"lm": BiLMHead(cfg, rngs=nnx.Rngs(seed + 1)) if independent else nnx.Dict()},
    )


def _text():
    """A fixed text: four rows of a repeating 9-token sequence at different offsets."""
    base = np.random.RandomState(0).randint(1, V, 9)
    ids = np.stack([np.tile(base, 4)[k : k + 20] for k in range(4)]).astype(np.int32)
    return {
        "input_ids": jnp.asarray(ids),
        "attention_mask": jnp.ones_like(ids),
        "token_labels": jnp.asarray(causal_labels(ids)),
        "example_weight": jnp.ones((4,), jnp.float32),
        "label": jnp.zeros((4,), jnp.int32),
    }


def _directions(model, batch):
    """(forward LM loss, backward LM loss), each a mean over its labelled tokens."""
    enc = model.encoder
    out = enc(batch["input_ids"], batch["attention_mask"])
    fwd, bwd = model.heads["lm"](out.last_hidden_state, enc.tied_embedding())
    f = losses.token_classification(fwd, batch)
    back = {**batch, "token_labels": losses.previous_token_labels(batch)}
    b = losses.token_classification(bwd, back)
    return f[0] / f[1], b[0] / b[1], (fwd, bwd)


def test_previous_token_labels_mirror_the_causal_ones():
    ids = np.array([[5, 6, 7, 8, 0, 0]], np.int32)
    mask = np.array([[1, 1, 1, 1, 0, 0]], np.int32)
    got = losses.previous_token_labels({"input_ids": ids, "attention_mask": mask})
    np.testing.assert_array_equal(got, [[IGNORE, 5, 6, 7, IGNORE, IGNORE]])
    np.testing.assert_array_equal(causal_labels(ids, mask), [[6, 7, 8, IGNORE, IGNORE, IGNORE]])


def test_bilm_loss_is_the_mean_of_both_directions():
    model, batch = _bilm(), _text()
    f, b, logits = _directions(model, batch)
    total, den = losses.lm(logits, batch)
    assert float(den) == 2 * 4 * 19  # both directions: 19 labelled tokens per row
    np.testing.assert_allclose(float(total / den), (float(f) + float(b)) / 2, rtol=1e-5)
    # eval: perplexity counts both directions, predicted tokens are the forward ones
    pred = losses.predictions("lm", logits, batch)
    np.testing.assert_allclose(float(pred["nll_sum"]), float(total), rtol=1e-6)
    assert pred["pred_tokens"].shape == batch["input_ids"].shape


def test_forward_and_backward_lm_losses_each_fall_on_a_fixed_text():
    model, batch = _bilm(), _text()
    f0, b0, _ = _directions(model, batch)
    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt):
        def loss_fn(m):
            out = m.encoder(batch["input_ids"], batch["attention_mask"])
            logits = m.heads["lm"](out.last_hidden_state, m.encoder.tied_embedding())
            total, den = losses.lm(logits, batch)
            return total / den

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    for _ in range(30):
        step(model, opt)
    f1, b1, _ = _directions(model, batch)
    # each direction on its own: from about ln(40) = 3.7 to well below
    assert float(f1) < 0.7 * float(f0), (float(f0), float(f1))
    assert float(b1) < 0.7 * float(b0), (float(b0), float(b1))


def test_each_direction_never_sees_the_tokens_it_predicts():
    """Changing token k moves the forward LM only at t >= k (it reads tokens <= t) and the
    backward LM only at t <= k (it reads tokens >= t)."""
    model = _bilm(seed=3)

    @nnx.jit
    def logits(model, ids):
        out = model.encoder(ids, jnp.ones_like(ids))
        return model.heads["lm"](out.last_hidden_state, model.encoder.tied_embedding())

    ids = np.asarray(_text()["input_ids"][:1])
    (f_a, b_a) = logits(model, jnp.asarray(ids))
    for k in (0, 3, 10, 19):
        other = ids.copy()
        other[0, k] = ids[0, k] % (V - 1) + 1
        f_b, b_b = logits(model, jnp.asarray(other))
        fwd_change = np.abs(np.asarray(f_a - f_b)).max(-1)[0]
        bwd_change = np.abs(np.asarray(b_a - b_b)).max(-1)[0]
        assert fwd_change[:k].max(initial=0.0) == 0.0, k
        assert bwd_change[k + 1 :].max(initial=0.0) == 0.0, k
        assert fwd_change[k:].min() > 0 and bwd_change[: k + 1].min() > 0, k


def test_a_bilstm_whose_layers_read_both_directions_would_leak():
    """Without independent stacks the second layer's forward half reads the backward states
    of the first, so it sees tokens to its right: the perturbation test catches that."""
    model = _bilm(seed=3, independent=False)
    ids = np.asarray(_text()["input_ids"][:1])
    other = ids.copy()
    other[0, 10] = ids[0, 10] % (V - 1) + 1
    h = [model.encoder(jnp.asarray(x), jnp.ones_like(x)).last_hidden_state for x in (ids, other)]
    assert float(jnp.abs(h[0] - h[1])[0, :10, :16].max()) > 0  # forward half before position 10
    with pytest.raises(ValueError, match="independent_directions"):
        BiLMHead(model.encoder.cfg, rngs=nnx.Rngs(0))


def test_objective_kind_is_bilm_automatically():
    assert kind_for(_bilm().encoder, "auto") == "bilm"
    with pytest.raises(ValueError, match="bidirectional LM"):
        kind_for(_bilm().encoder, "clm")


def test_elmo_representation_is_the_scalar_mix_with_gamma_beside_the_token_layer():
    rep = models.Representation("elmo", 2, 32, rngs=nnx.Rngs(0))
    assert rep.output_size == 64
    rep.weights[...] = jnp.array([0.5, -1.0, 2.0])
    rep.gamma[...] = jnp.array(1.7)
    hs = tuple(jax.random.normal(jax.random.key(i), (2, 5, 32)) for i in range(3))
    w = jax.nn.softmax(jnp.array([0.5, -1.0, 2.0]))
    want_mix = 1.7 * sum(w[j] * hs[j] for j in range(3))
    got = rep(hs)
    np.testing.assert_allclose(got[..., :32], want_mix, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[..., 32:], hs[0])


def test_new_model_names_build_a_random_encoder_with_a_tokenizer():
    assert elmo_config.BILM.startswith(scratch.PREFIX) and scratch.is_spec(elmo_config.BILM)
    enc, tok, cfg, _ = scratch.build("new:jaxtl_bilstm,hidden_size=8,independent_directions=true")
    assert cfg["model_type"] == "jaxtl_bilstm" and enc.cfg.vocab_size == len(tok)
    assert enc.cfg.independent_directions is True and enc.cfg.hidden_size == 8
    with pytest.raises(ValueError, match=r"model.name=.*model_type first"):
        scratch.parse("new:hidden_size=3")
    with pytest.raises(ValueError, match=r"model.name=.*'oops' is not <attr>=<value>"):
        scratch.parse("new:jaxtl_bilstm,oops")
    with pytest.raises(ValueError, match=r"model.name=.*num_heads"):
        scratch.build("new:jaxtl_bilstm,num_heads=3")


@pytest.mark.slow  # about two minutes on 2 shared cores (compiling the biLM programs)
def test_plan_and_results_of_the_tiny_run(data_dir, tmp_path):
    """The :tiny config end to end through launch.py: the biLM pretrains on WikiText (dev
    perplexity reported), then the NER tagger trains on ELMo's mix while the biLM is frozen."""
    wd = tmp_path / "wd"
    cmd = [sys.executable, str(REPO / "launch.py"), "--regime=unsupervised_sequential",
           f"--config={REPO / 'configs' / 'unsupervised_sequential_elmo.py'}:tiny",
           f"--config.data.dir={data_dir}", f"--workdir={wd}",
           "--config.pretrain.steps=4", "--config.train.steps=4",
           # a smaller biLM: the test is about the wiring, the config's own size is the run's
           "--config.model.name=new:jaxtl_bilstm,embed_size=16,hidden_size=16,"
           "independent_directions=1"]  # fmt: skip
    env = dict(os.environ, XLA_FLAGS=xla_flags(1))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    results = json.loads((wd / "results.json").read_text())
    assert np.isfinite(results["wikitext"]["perplexity"])
    assert 0.0 <= results["conll2003"]["span_f1"] <= 1.0
    phases = json.loads((wd / "plan.json").read_text())["phases"]
    assert [ph["stage"] for ph in phases] == ["pretrain", "adapt"]
    pre, adapt = ({g["name"]: g for g in ph["groups"]} for ph in phases)
    assert not pre["embeddings"]["frozen"] and not pre["layer_1"]["frozen"]
    assert all(adapt[k]["frozen"] for k in ("embeddings", "layer_0", "layer_1"))
    assert not adapt["new"]["frozen"]  # the scalar mix's w and gamma, and the tagger
    params = {q["path"] for q in phases[1]["params"] if q["trainable"]}
    assert {"representation/weights", "representation/gamma"} <= params
    assert not any(q.startswith("encoder/") for q in params)


@pytest.mark.slow  # three launches: a few minutes on 2 shared cores
def test_kill_and_resume_continues_bit_identically(tmp_path):
    """kill -9 after the biLM's step-5 checkpoint, re-run: the same losses at every step of
    both stages as the uninterrupted run (offline: the built-in corpus and NER task)."""
    from test_system_ulmfit import _train_losses, kill_and_resume

    ref = tmp_path / "ref"
    cmd = [sys.executable, str(REPO / "launch.py"), "--regime=unsupervised_sequential",
           f"--config={REPO / 'configs' / 'unsupervised_sequential_elmo.py'}:tiny",
           f"--workdir={ref}", "--config.pretrain.corpus=builtin/corpus",
           "--config.target.tasks=('builtin/ner',)", "--config.pretrain.steps=8",
           "--config.train.steps=4", "--config.model.name=new:jaxtl_bilstm,embed_size=16,"
           "hidden_size=16,independent_directions=1"]  # fmt: skip
    env = dict(os.environ, XLA_FLAGS=xla_flags(1))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert len(_train_losses(ref)) == 12
    kill_and_resume(cmd, ref, tmp_path / "wd", after=5)
