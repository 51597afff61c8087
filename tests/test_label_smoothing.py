"""train.label_smoothing: the classification and tagging losses against a smoothed target, as
transformers' Trainer (label_smoothing_factor) and torch's CrossEntropyLoss(label_smoothing)."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import minilm_dir
from flax import nnx

from jaxtl import assembly, losses, models
from jaxtl import config as config_lib
from jaxtl.data import batching, get_task, tokenize
from jaxtl.data.batch import IGNORE
from jaxtl.data.prepare import TaskData
from jaxtl.models import hf
from jaxtl.objectives import switch_loss

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
TOL = 1e-5  # fp32, against torch's own implementation


def test_smoothed_losses_are_torchs_cross_entropy_with_label_smoothing():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 5)).astype(np.float32)
    labels = rng.integers(0, 5, 6).astype(np.int32)
    weight = np.array([1, 1, 1, 1, 0, 1], np.float32)  # row 4 only pads the batch
    batch = {"label": labels, "example_weight": weight}
    for s in (0.0, 0.1, 0.4):
        total, den = losses.classification(jnp.asarray(logits), batch, smoothing=s)
        real = weight > 0
        want = torch.nn.CrossEntropyLoss(label_smoothing=s)(
            torch.tensor(logits[real]), torch.tensor(labels[real], dtype=torch.long)
        )
        assert abs(float(total) / float(den) - float(want)) <= TOL, s
    # tagging: IGNORE tokens are left out, as torch's ignore_index
    tok_logits = rng.normal(size=(2, 4, 3)).astype(np.float32)
    tags = np.array([[IGNORE, 0, 2, IGNORE], [1, 1, IGNORE, IGNORE]], np.int32)
    tb = {"token_labels": tags, "example_weight": np.ones(2, np.float32)}
    total, den = losses.token_classification(jnp.asarray(tok_logits), tb, smoothing=0.2)
    want = torch.nn.CrossEntropyLoss(ignore_index=IGNORE, label_smoothing=0.2)(
        torch.tensor(tok_logits.reshape(-1, 3)), torch.tensor(tags.reshape(-1), dtype=torch.long)
    )
    assert float(den) == 4.0 and abs(float(total) / float(den) - float(want)) <= TOL


def test_switch_loss_smooths_classification_and_tagging_only():
    tokenizer = hf.load_tokenizer(minilm_dir())
    cfg = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
           "intermediate_size": 64, "max_position_embeddings": 512, "type_vocab_size": 2,
           "vocab_size": 30522}  # fmt: skip
    enc = models.build_encoder("bert", cfg, rngs=nnx.Rngs(0))
    config = config_lib.base_config()
    for name in ("builtin/sentiment", "builtin/similarity"):
        task = get_task(name)
        head = assembly.make_head(task, enc.hidden_size, config, nnx.Rngs(1), encoder=enc)
        model = models.TransferModel(enc, {"t": head})
        e = tokenize.encode(task, task.load("dev")[:8], tokenizer, max_length=32)
        (batch,) = batching.eval_batches(e, batch_size=8, buckets=(32,))
        batch = jax.tree.map(jnp.asarray, batch)
        td = TaskData(task, 0, "t", len(e), None, [], "dev")
        rngs = nnx.Rngs(dropout=0)
        plain = float(switch_loss([td])(model, batch, rngs, False)[0])
        smooth = float(switch_loss([td], label_smoothing=0.3)(model, batch, rngs, False)[0])
        if task.kind == "regression":
            assert smooth == plain  # no classes to smooth over
            continue
        _, feats = model.features(batch["input_ids"], batch["attention_mask"],
                                  batch["token_type_ids"])  # fmt: skip
        logp = jax.nn.log_softmax(model.heads["t"](feats, batch["attention_mask"]), -1)
        nll = -jnp.take_along_axis(logp, batch["label"][:, None], -1)[:, 0]
        want = float(jnp.sum(0.7 * nll + 0.3 * -logp.mean(-1)))
        assert abs(plain - float(nll.sum())) <= TOL * abs(plain)
        assert abs(smooth - want) <= TOL * abs(want) and abs(smooth - plain) > 1e-3


# Two launches (~35 s on 2 cores): slow. The default run keeps the loss itself (this module's
# other tests) and the check of a bad value below.
@pytest.mark.slow
def test_label_smoothing_reaches_the_run(tiny_bert_dir, tmp_path):
    def first_loss(s):
        wd = tmp_path / f"s{s}"
        p = subprocess.run(
            [sys.executable, "launch.py", "--regime=multitask", "--config=configs/multitask.py:tiny",
             f"--config.model.name={tiny_bert_dir}", "--config.tasks.names=('builtin/sentiment',)",
             "--config.train.steps=1", "--config.train.log_every=1", "--config.train.eval_every=0",
             f"--config.train.label_smoothing={s}", f"--workdir={wd}"],
            cwd=REPO, capture_output=True, text=True, timeout=600)  # fmt: skip
        assert p.returncode == 0, p.stderr[-3000:]
        rows = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
        return next(r["loss"] for r in rows if r["split"] == "train" and r["step"] == 1)

    assert abs(first_loss(0.0) - first_loss(0.5)) > 1e-4  # the same batch and params otherwise


def test_a_bad_label_smoothing_stops_the_run_first(tmp_path):
    p = subprocess.run([sys.executable, "launch.py", "--regime=multitask",
                        "--config.train.label_smoothing=1.0", f"--workdir={tmp_path / 'x'}"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode != 0
    assert "train.label_smoothing=1.0: must be in [0, 1)" in p.stderr.splitlines()[-1]
