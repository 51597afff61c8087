"""CoVe (configs/supervised_sequential_cove.py): a BiLSTM translation encoder on Multi30k, then
its frozen states next to the input embeddings feed a target classifier."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import kill_after_checkpoint  # noqa: E402
from flax import nnx

from jaxtl import paths
from jaxtl.models.bilstm import BiLSTMConfig, BiLSTMEncoder
from jaxtl.models.representation import Representation

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def test_cove_features_are_input_embeddings_next_to_the_top_layer():
    """``model.representation=cove``: [B,T,2*W] = [h_0 ; h_L] with W = 2 * hidden per direction
    (embed_size = W, as in the config, so h_0 is the word embedding itself)."""
    cfg = BiLSTMConfig(vocab_size=40, embed_size=12, hidden_size=6, num_layers=2, dropout=0.0)
    enc = BiLSTMEncoder(cfg, rngs=nnx.Rngs(0))
    ids = jnp.asarray(np.random.default_rng(0).integers(1, 40, (3, 7)), jnp.int32)
    mask = jnp.ones_like(ids)
    out = enc(ids, mask)
    rep = Representation("cove", enc.num_layers, enc.hidden_size, rngs=nnx.Rngs(0))
    feats = rep(out.hidden_states)
    assert rep.output_size == 24 and feats.shape == (3, 7, 24)
    np.testing.assert_array_equal(feats[..., :12], enc.embeddings.word(ids))
    np.testing.assert_array_equal(feats[..., 12:], out.last_hidden_state)
    assert not nnx.state(rep, nnx.Param)  # no parameters of its own: nothing to train


def _params(step_dir: pathlib.Path) -> dict[str, np.ndarray]:
    import orbax.checkpoint as ocp

    tree = ocp.PyTreeCheckpointer().restore(str(step_dir / "state"))["params"]
    return {k: np.asarray(v) for k, v in paths.flatten(tree).items()}


@pytest.fixture(scope="module")
def cove_run(tmp_path_factory):
    if not (DATA / "multi30k").is_dir() or not (DATA / "SST-2").is_dir():
        pytest.skip("needs ../shared/data (multi30k, SST-2)")
    work = tmp_path_factory.mktemp("cove")
    cmd = [sys.executable, "launch.py", "--regime=supervised_sequential",
           "--config=configs/supervised_sequential_cove.py:tiny", f"--config.data.dir={DATA}",
           f"--workdir={work}"]  # fmt: skip
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work, cmd


@pytest.mark.slow
def test_tiny_config_runs_both_stages_and_reports_bleu(cove_run):
    cove_run, _ = cove_run
    dev = json.loads((cove_run / "results.json").read_text())
    test = json.loads((cove_run / "results_test.json").read_text())
    assert set(dev) >= {"multi30k", "sst2"}
    assert 0.0 <= dev["multi30k"]["bleu"] <= 100.0 and "bleu" in test["multi30k"]
    assert 0.0 <= dev["sst2"]["accuracy"] <= 1.0
    plan = json.loads((cove_run / "plan.json").read_text())
    assert [ph["stage"] for ph in plan["phases"]] == ["source", "target"]


@pytest.mark.slow
def test_target_stage_leaves_encoder_and_decoder_unchanged(cove_run):
    cove_run, _ = cove_run
    """The encoder (CoVe) and the translation decoder are frozen while the classifier trains:
    bit-identical before and after the target stage; the classifier's params do change."""
    (src_step,) = list((cove_run / "best" / "source").iterdir())
    last = max((cove_run / "checkpoints").iterdir(), key=lambda p: int(p.name))
    before, after = _params(src_step), _params(last)
    frozen = [k for k in before if k.startswith(("encoder/", "heads/multi30k/"))]
    assert frozen and any(k.startswith("encoder/layers/") for k in frozen)
    for k in frozen:
        np.testing.assert_array_equal(before[k], after[k], err_msg=k)
    trained = [k for k in before if k.startswith("heads/sst2/")]
    assert trained and any(not np.array_equal(before[k], after[k]) for k in trained)


def _train_losses(work: pathlib.Path) -> dict[int, tuple[str, float]]:
    rows = [json.loads(x) for x in (work / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: (r["task"], r["loss"]) for r in rows if r["split"] == "train"}


@pytest.mark.slow
def test_kill_and_resume_continues_bit_identically(cove_run, tmp_path):
    """kill -9 after the step-5 checkpoint of the seq2seq (BiLSTM + attentional LSTM) source
    stage, re-run the same command: the same loss at every step of both stages as the
    uninterrupted run."""
    ref, cmd = cove_run
    work = tmp_path / "wd"
    # The tokenizers WordPiece trainer breaks frequency ties differently from run to run; a run
    # keeps its trained target vocabulary in the workdir (what a resume reads back), so this run
    # starts with the reference run's, and the two runs differ only by the kill.
    shutil.copytree(ref / "target_tokenizer", work / "target_tokenizer")
    cmd = [c if not c.startswith("--workdir=") else f"--workdir={work}" for c in cmd]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    kill_after_checkpoint(cmd, work, 5, env=env, cwd=ROOT)
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    got, want = _train_losses(work), _train_losses(ref)
    assert sorted(got) == sorted(want) and len(got) == 20
    assert got == want  # exact: the same batches (and MASS spans), the same losses
