"""MASS (configs/unsupervised_sequential_mass.py): the encoder sees the line with a span masked, the
decoder predicts the span from the span's previous tokens only."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from conftest import kill_after_checkpoint  # noqa: E402

from jaxtl.data import batch as layout
from jaxtl.data.batch import IGNORE
from jaxtl.objectives import seq2seq as seq2seq_objective
from jaxtl.objectives.mass import MassBatches, mass_mask

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CLS, SEP, MASK = 101, 102, 103


def sentences(rows: list[list[int]], t: int = 16) -> dict[str, np.ndarray]:
    b = layout.empty(len(rows), t)
    for r, words in enumerate(rows):
        ids = [CLS, *words, SEP]
        b["input_ids"][r, : len(ids)] = ids
        b["attention_mask"][r, : len(ids)] = 1
        b["example_weight"][r] = 1.0
    return b


def test_span_is_masked_for_the_encoder_and_fed_shifted_to_the_decoder():
    words = [[1000 + i for i in range(n)] for n in (10, 7, 1, 4)]
    batch = sentences(words)
    out = mass_mask(batch, np.random.default_rng(0), mask_id=MASK, span=0.5)
    for r, w in enumerate(words):
        n, k = len(w), max(1, round(0.5 * len(w)))
        masked = np.flatnonzero(out["input_ids"][r] == MASK)
        assert len(masked) == k and np.all(np.diff(masked) == 1)  # one contiguous span
        u = int(masked[0])
        assert 1 <= u and u + k <= n + 1  # inside the words: [CLS] and [SEP] never masked
        ids = batch["input_ids"][r]
        keep = np.ones(16, bool)
        keep[u : u + k] = False
        np.testing.assert_array_equal(out["input_ids"][r][keep], ids[keep])
        np.testing.assert_array_equal(out["decoder_input_ids"][r, :k], ids[u - 1 : u + k - 1])
        np.testing.assert_array_equal(out["decoder_positions"][r, :k], np.arange(u, u + k))
        np.testing.assert_array_equal(out["decoder_labels"][r, :k], ids[u : u + k])
        assert (out["decoder_labels"][r, k:] == IGNORE).all()
    assert (batch["input_ids"] != MASK).all()  # the input batch is left unchanged


def test_decoder_sees_only_the_span_and_its_previous_token():
    """Perturb every token outside ``[u-1, u+k)``: the decoder's inputs, positions and labels
    do not change. Perturb a span token: the encoder's input does not change (it sees [MASK])."""
    rng_seed = 3
    words = [[1000 + i for i in range(12)], [2000 + i for i in range(9)]]
    base = mass_mask(sentences(words), np.random.default_rng(rng_seed), mask_id=MASK)
    dec = seq2seq_objective.decoder_inputs(base)
    assert dec is not None
    for r in range(len(words)):
        masked = np.flatnonzero(base["input_ids"][r] == MASK)
        u, k = int(masked[0]), len(masked)
        outside = [j for j in range(1, len(words[r]) + 1) if not u - 1 <= j < u + k]
        changed = [list(w) for w in words]
        for j in outside:
            changed[r][j - 1] += 50_000
        pert = mass_mask(sentences(changed), np.random.default_rng(rng_seed), mask_id=MASK)
        pdec = seq2seq_objective.decoder_inputs(pert)
        for a, b in zip(dec[:3], pdec[:3]):
            np.testing.assert_array_equal(np.asarray(a)[r], np.asarray(b)[r])
        assert not np.array_equal(base["input_ids"][r], pert["input_ids"][r])  # encoder does see
        inside = [list(w) for w in words]
        inside[r][u - 1] += 50_000  # the first span word (position u)
        pin = mass_mask(sentences(inside), np.random.default_rng(rng_seed), mask_id=MASK)
        np.testing.assert_array_equal(base["input_ids"][r], pin["input_ids"][r])


def test_mass_batches_resume_with_the_same_spans():
    class Inner:  # the TrainBatches state API over a fixed list of batches
        def __init__(self):
            self.epoch, self.position = 0, 0
            self.batches = [sentences([[1000 + i + j for i in range(8)]]) for j in range(5)]

        def __next__(self):
            b = self.batches[self.position % 5]
            self.position += 1
            return b

        def state(self):
            return {"epoch": self.epoch, "position": self.position}

        def restore(self, s):
            self.epoch, self.position = s["epoch"], s["position"]

    it = MassBatches(Inner(), MASK, 0.5, seed=7)
    next(it)
    saved = it.state()
    first = [next(it)["input_ids"] for _ in range(3)]
    again = MassBatches(Inner(), MASK, 0.5, seed=7)
    again.restore(saved)
    for a in first:
        np.testing.assert_array_equal(a, next(again)["input_ids"])


@pytest.fixture(scope="module")
def mass_run(tmp_path_factory):
    if not (DATA / "wikitext-103-subset").is_dir() or not (DATA / "SST-2").is_dir():
        pytest.skip("needs ../shared/data (wikitext-103-subset, SST-2)")
    work = tmp_path_factory.mktemp("mass")
    cmd = [sys.executable, "launch.py", "--regime=unsupervised_sequential",
           "--config=configs/unsupervised_sequential_mass.py:tiny", f"--config.data.dir={DATA}",
           f"--workdir={work}"]  # fmt: skip
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work, cmd


@pytest.mark.slow
def test_tiny_config_pretrains_then_adapts_from_the_pretrain_checkpoint(mass_run):
    mass_run, _ = mass_run
    import orbax.checkpoint as ocp

    from jaxtl import paths

    results = json.loads((mass_run / "results.json").read_text())
    assert results["wikitext"]["perplexity"] > 1.0 and "accuracy" in results["sst2"]
    # The WikiText test articles, span-masked like dev, scored once with the stage's params;
    # a span stream has no text to decode, so no predictions file.
    test = json.loads((mass_run / "results_test.json").read_text())
    assert 1.0 < test["wikitext"]["perplexity"] != results["wikitext"]["perplexity"]
    assert not (mass_run / "predictions" / "wikitext").exists()
    losses = [json.loads(line) for line in (mass_run / "metrics.jsonl").read_text().splitlines()]
    pre = [m for m in losses if m.get("split") == "train" and m.get("stage") == "pretrain"]
    assert pre and all(np.isfinite(m["loss"]) and m["denominator"] > 0 for m in pre)

    def params(step_dir):
        tree = ocp.PyTreeCheckpointer().restore(str(step_dir / "state"))["params"]
        return {k: np.asarray(v) for k, v in paths.flatten(tree).items()}

    (pre_step,) = list((mass_run / "best" / "pretrain").iterdir())
    last = max((mass_run / "checkpoints").iterdir(), key=lambda p: int(p.name))
    before, after = params(pre_step), params(last)
    decoder = [k for k in before if k.startswith("heads/mass/")]
    assert decoder and all(np.array_equal(before[k], after[k]) for k in decoder)  # frozen
    encoder = [k for k in before if k.startswith("encoder/")]
    assert any(not np.array_equal(before[k], after[k]) for k in encoder)  # fine-tuned


def _train_losses(work: pathlib.Path) -> dict[int, tuple[str, float]]:
    rows = [json.loads(x) for x in (work / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: (r["task"], r["loss"]) for r in rows if r["split"] == "train"}


@pytest.mark.slow
def test_kill_and_resume_continues_bit_identically(mass_run, tmp_path):
    """kill -9 after the step-5 checkpoint of MASS pretraining, re-run the same command: the
    same loss at every step of both stages as the uninterrupted run (the same spans too)."""
    ref, cmd = mass_run
    work = tmp_path / "wd"
    cmd = [c if not c.startswith("--workdir=") else f"--workdir={work}" for c in cmd]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    kill_after_checkpoint(cmd, work, 5, env=env, cwd=ROOT)
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    got, want = _train_losses(work), _train_losses(ref)
    assert sorted(got) == sorted(want) and len(got) == 20
    assert got == want  # exact: the same batches (and MASS spans), the same losses


def test_a_family_without_an_lm_head_still_pretrains_with_mass(tiny_bert_dir, tmp_path):
    """MASS trains a new decoder, not the LM head, so ELECTRA's discriminator (no LM head in
    jaxtl) runs it; an MLM stage on it is refused by name."""
    import shutil

    from flax import nnx

    from jaxtl import models

    model = tmp_path / "electra"
    hf_config = {"vocab_size": 30522, "hidden_size": 32, "embedding_size": 32,
                 "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
                 "max_position_embeddings": 512, "type_vocab_size": 2}  # fmt: skip
    models.save_pretrained(models.build_encoder("electra", hf_config, rngs=nnx.Rngs(0)), model)
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        if (tiny_bert_dir / f).exists():
            shutil.copy(tiny_bert_dir / f, model / f)
    launch = [sys.executable, "launch.py", "--regime=unsupervised_sequential"]
    base = [f"--config.model.name={model}", "--config.pretrain.corpus=builtin/corpus",
            "--config.target.tasks=('builtin/sentiment',)", "--config.pretrain.steps=2",
            "--config.train.steps=2", "--config.train.progress=False"]  # fmt: skip
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    work = tmp_path / "mass"
    cmd = [
        *launch,
        "--config=configs/unsupervised_sequential_mass.py:tiny",
        *base,
        f"--workdir={work}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((work / "results.json").read_text())
    assert "accuracy" in results["builtin/sentiment"] and "perplexity" in results["builtin/corpus"]
    cmd = [
        *launch,
        "--config=configs/unsupervised_sequential.py:tiny",
        *base,
        f"--workdir={tmp_path / 'm'}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "model_type 'electra' has no LM head" in proc.stderr
