"""Self-supervised joint training: the launch contract and stream alternation, the unlabelled
branch's loss and its gradient into the encoder, and consistency's KL sanity check."""

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

from jaxtl import paths
from jaxtl.configs import self_supervised as self_supervised_config
from jaxtl.data import mixture
from jaxtl.regimes import self_supervised

REPO = pathlib.Path(__file__).resolve().parents[1]
STEPS = 12


def _config(model_dir, **extra):
    c = self_supervised_config.get_config("tiny")
    c.model.name = str(model_dir)
    for k, v in extra.items():
        node = c
        *parents, leaf = k.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = v
    return c


def test_launch_aux_lm_writes_contract_files_and_alternates(tiny_bert_dir, tmp_path):
    wd = tmp_path / "wd"
    cmd = [sys.executable, str(REPO / "launch.py"), "--regime=self_supervised",
           f"--workdir={wd}", f"--config={REPO / 'configs' / 'self_supervised.py'}:tiny",
           f"--config.model.name={tiny_bert_dir}", f"--config.train.steps={STEPS}",
           "--config.unlabelled.ratio=0.5", "--config.optim.lr=1e-3"]  # fmt: skip
    env = dict(os.environ, XLA_FLAGS=xla_flags(1))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    for f in ("config.json", "metrics.jsonl", "results.json", "plan.json", "task_counts.json"):
        assert (wd / f).is_file(), f
    results = json.loads((wd / "results.json").read_text())
    assert 0.0 <= results["builtin/sentiment"]["accuracy"] <= 1.0
    assert results["builtin/corpus"]["perplexity"] > 1.0
    # ratio 0.5: one unlabelled batch per two labelled ones, in a fixed repeating pattern
    pattern = self_supervised.stream_pattern(0.5)
    assert sorted(pattern) == ["labelled", "labelled", "unlabelled"]
    counts = json.loads((wd / "task_counts.json").read_text())
    assert counts == {"builtin/sentiment": 8, "builtin/corpus": 4}
    records = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    train = {r["step"]: r for r in records if r["split"] == "train"}
    assert sorted(train) == list(range(1, STEPS + 1))
    for step, r in train.items():  # the record of step s is the batch drawn at s - 1
        stream = mixture.stream_for_step(step - 1, pattern)
        assert r["task"] == ("builtin/corpus" if stream == "unlabelled" else "builtin/sentiment")
        assert np.isfinite(r["loss"]) and r["loss"] > 0
    # one compiled step for both streams (LM blocks and sentences share the 32 bucket here)
    comp = [r for r in records if r["split"] == "run" and r["task"] == "compilations"][-1]
    assert comp["train"] == 1


def _loss_and_grads(model, loss_fn, batch, train_mode, seed=0):
    graphdef, params = nnx.split(model, nnx.Param)
    batch = {k: jnp.asarray(v) for k, v in batch.items()}

    def f(p):
        total, m = loss_fn(
            nnx.merge(graphdef, p), batch, nnx.Rngs(dropout=jax.random.key(seed)), train_mode
        )
        return total / jnp.maximum(m["denominator"], 1.0)

    loss, grads = jax.jit(jax.value_and_grad(f))(params)
    return float(loss), paths.flatten(nnx.to_pure_dict(grads))


def _encoder_grad_norm(grads):
    return sum(float(jnp.sum(g**2)) for p, g in grads.items() if p.startswith("encoder/"))


def test_aux_lm_unlabelled_branch_trains_encoder_and_lm_head(tiny_bert_dir):
    model, targets, unl, loss_fn, _ = build_self_supervised(_config(tiny_bert_dir))
    batch = next(unl.train_iter)
    batch["task_id"][:] = unl.index
    loss, grads = _loss_and_grads(model, loss_fn, batch, True)
    assert loss > 1.0  # ~log(30522) for a random tiny model
    assert _encoder_grad_norm(grads) > 0
    assert sum(float(jnp.sum(g**2)) for p, g in grads.items() if p.startswith("heads/lm/")) > 0
    head = f"heads/{targets[0].key}/"
    assert all(float(jnp.abs(g).max()) == 0 for p, g in grads.items() if p.startswith(head))


@pytest.fixture(scope="module")
def consistency(tiny_bert_dir):
    return {
        noise: build_self_supervised(
            _config(tiny_bert_dir, objective="consistency", **{"unlabelled.noise": noise})
        )
        for noise in (0.0, 0.3)
    }


def test_consistency_kl_is_zero_without_noise(consistency):
    model, _, unl, loss_fn, _ = consistency[0.0]
    batch = next(unl.train_iter)
    batch["task_id"][:] = unl.index
    # Deterministic forward passes: clean and "noised" inputs are the same, so is p(y|x).
    loss, _ = _loss_and_grads(model, loss_fn, batch, False)
    assert abs(loss) < 1e-6, loss


def test_consistency_loss_is_positive_and_reaches_encoder_with_noise(consistency):
    model, targets, unl, loss_fn, _ = consistency[0.3]
    batch = next(unl.train_iter)
    batch["task_id"][:] = unl.index
    loss, grads = _loss_and_grads(model, loss_fn, batch, True)
    assert loss > 1e-6
    assert _encoder_grad_norm(grads) > 0
    head = f"heads/{targets[0].key}/"
    assert sum(float(jnp.sum(g**2)) for p, g in grads.items() if p.startswith(head)) > 0
