"""Feature extraction from a cache: a frozen encoder's features computed once, heads train on them.

The cached and uncached paths give the same head outputs (<= 1e-5) on the same parameters; the
encoder does not run once the cache exists; the disk cache hits, resumes a killed build and is
rebuilt when the data or the representation changes; a run trains through launch.py with it.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import small_config, xla_flags
from flax import nnx

from jaxtl import features
from jaxtl.objectives import supervised

REPO = pathlib.Path(__file__).resolve().parents[1]
TOL = 1e-5


def config(model_dir, **overrides):
    from jaxtl import config as config_lib
    from jaxtl.regimes import multitask

    c = config_lib.base_config()
    multitask.add_config(c)
    base = {
        "tasks.names": ("builtin/sentiment", "builtin/ner"),
        "optim.strategy": "feature_extraction",
        "data.max_train_examples": 24,
        "data.max_eval_examples": 16,
        "train.steps": 4,
        "train.eval_every": 0,
        "train.eval_batch_size": 8,
        "features.cache": "memory",
    }
    return small_config(c, model_dir, **(base | overrides))


def stage_of(cfg, workdir):
    from jaxtl.regimes import multitask
    from jaxtl.run import prepare

    r = prepare(cfg, workdir, cfg.tasks.names)
    return r, multitask.joint_stage(cfg, r.tasks, r.params)


def head_logits(model, td, batch):
    """The task head's logits on a batch (cached or not), the way the loss computes them."""
    b = jax.tree.map(jnp.asarray, batch)
    _, feats = supervised._features(model, b)
    head = model.heads[td.key]
    return np.asarray(head(feats, b["attention_mask"], **supervised.segment_kw(b)))


@pytest.mark.parametrize(
    "overrides",
    [
        # [CLS] of the last layer (BERT's pooler head) and a linear tagger, packed batches
        {"model.representation": "last"},
        # ELMo's scalar mix over all layers, mean pooling, the BiLSTM tagger; unpacked batches
        {"model.representation": "scalar_mix", "model.head": "linear", "model.pooling": "mean",
         "model.tagger_bilstm": 8, "data.packing": False},
    ],
    ids=["last-cls-packed", "scalar_mix-mean-bilstm"],
)  # fmt: skip
def test_cached_equals_uncached(tiny_bert_dir, tmp_path, overrides):
    cfg = config(tiny_bert_dir, **overrides)
    r, stage = stage_of(cfg, tmp_path)
    model = r.model
    if model.representation is not None and model.representation.kind == "scalar_mix":
        # a mix that is not uniform, so the stored layers really are mixed
        model.representation.weights[...] = jnp.asarray([0.3, -1.0, 0.7])
        model.representation.gamma[...] = jnp.asarray(1.7)
    graphdef, state = nnx.split(model, nnx.Param)
    params = nnx.to_pure_dict(state)
    stage.features.prepare(graphdef, params, tmp_path)
    key = jax.random.key(3)
    for td in r.tasks:
        batches = [td.eval_batches[0], next(td.train_iter)]
        assert all(("segment_ids" in b) == cfg.data.packing for b in batches)
        for b in batches:
            cb = stage.features.attach(b)
            assert "features" in cb
            got, want = head_logits(model, td, cb), head_logits(model, td, b)
            if td.task.kind == "tagging":  # real tokens only
                real = np.asarray(b["attention_mask"]) > 0
                got, want = got[real], want[real]
            else:
                w = np.asarray(b["example_weight"]) > 0
                got, want = got[w], want[w]
            np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
            # The train-mode loss too: the frozen encoder runs without dropout and the heads'
            # dropout draws the same masks on both paths.
            lc, _ = stage.loss_fn(model, jax.tree.map(jnp.asarray, cb), nnx.Rngs(dropout=key), True)
            lu, _ = stage.loss_fn(model, jax.tree.map(jnp.asarray, b), nnx.Rngs(dropout=key), True)
            np.testing.assert_allclose(float(lc), float(lu), atol=TOL, rtol=TOL)
    # what is stored: one vector per sentence (one layer, or all 3 for the mix), tokens for NER
    k = 3 if cfg.model.representation == "scalar_mix" else 1
    h = 32
    sent, ner = (stage.features.stores[td.index] for td in r.tasks)
    assert not sent.tokens and ner.tokens
    assert sent.shards[0].shape[1:] == (k, h) == ner.shards[0].shape[1:]


def test_frozen_encoder_runs_without_dropout(tiny_bert_dir, tmp_path):
    """feature_extraction: the train loss is deterministic in the encoder (the head keeps its
    dropout); features.encoder_dropout=True brings the encoder's back."""
    out = {}
    for opt_in in (False, True):
        cfg = config(tiny_bert_dir, **{"features.cache": "off", "model.dropout": 0.0,
                                        "features.encoder_dropout": opt_in})  # fmt: skip
        r, stage = stage_of(cfg, tmp_path / str(opt_in))
        assert stage.features is None
        b = jax.tree.map(jnp.asarray, r.tasks[0].eval_batches[0])
        losses = [float(stage.loss_fn(r.model, b, nnx.Rngs(dropout=jax.random.key(i)), True)[0])
                  for i in range(2)]  # fmt: skip
        out[opt_in] = losses
    assert out[False][0] == out[False][1]
    assert out[True][0] != out[True][1]


def test_strategy_that_trains_the_encoder_has_no_cache(tiny_bert_dir, tmp_path):
    _, stage = stage_of(config(tiny_bert_dir, **{"optim.strategy": "top_k",
                                                 "features.cache": "auto"}), tmp_path)  # fmt: skip
    assert stage.features is None
    _, stage = stage_of(config(tiny_bert_dir, **{"optim.strategy": "top_k", "optim.top_k": 0,
                                                 "features.cache": "auto"}), tmp_path)  # fmt: skip
    assert stage.features is not None  # top_k = 0 freezes the whole encoder too
    with pytest.raises(ValueError, match="features.cache"):
        _validate(config(tiny_bert_dir, **{"features.cache": "always"}))
    with pytest.raises(ValueError, match="features.encoder_dropout"):
        _validate(config(tiny_bert_dir, **{"features.encoder_dropout": True}))


def _validate(cfg):
    from jaxtl import config as config_lib

    config_lib.validate(cfg)


def write_data(folder, extra=""):
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        ("a fine film", "pos"),
        ("a dull film", "neg"),
        ("great acting", "pos"),
        ("weak plot" + extra, "neg"),
        ("loved it", "pos"),
        ("hated it", "neg"),
    ] * 3
    text = "sentence\tlabel\n" + "".join(f"{s} {i}\t{y}\n" for i, (s, y) in enumerate(rows))
    (folder / "train.tsv").write_text(text)
    (folder / "dev.tsv").write_text("sentence\tlabel\ngood\tpos\nbad\tneg\n")


def test_disk_cache_hits_resumes_and_rebuilds(tiny_bert_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(features, "SHARD_BATCHES", 1)  # one shard per batch of 8
    monkeypatch.setattr(features, "PACK_SLOTS", 0)  # one input per row: three batches
    write_data(tmp_path / "mine")
    spec = "file:name=mine,path=mine/{split}.tsv,text=sentence,label=label"
    cache_dir = tmp_path / "cache"

    def build(**over):
        cfg = config(tiny_bert_dir, **{"tasks.names": (spec,), "data.dir": str(tmp_path),
                                       "features.cache": "disk", "features.dir": str(cache_dir),
                                       "data.packing": False, **over})  # fmt: skip
        r, stage = stage_of(cfg, tmp_path / "wd")
        graphdef, state = nnx.split(r.model, nnx.Param)
        stage.features.prepare(graphdef, nnx.to_pure_dict(state), tmp_path / "wd")
        b = r.tasks[0].eval_batches[0]
        return stage.features, head_logits(r.model, r.tasks[0], stage.features.attach(b))

    first, logits = build()
    n = first.stats["computed_batches"]
    assert n == 3 and first.stats["written_shards"] == 3  # 18 + 2 distinct inputs, batches of 8
    [folder] = [p for p in (cache_dir / "mine").iterdir()]
    assert (folder / "manifest.json").exists()

    hit, again = build()  # same model, data and representation: read back, nothing computed
    assert hit.stats["computed_batches"] == 0 and hit.stats["loaded_shards"] == 3
    np.testing.assert_array_equal(again, logits)

    # A build killed before its manifest (and its last shard): only the missing shard is redone.
    (folder / "manifest.json").unlink()
    (folder / "shard_00002.npy").unlink()
    resumed, again = build()
    assert resumed.stats["computed_batches"] == 1 and resumed.stats["loaded_shards"] == 2
    np.testing.assert_allclose(again, logits, atol=TOL)
    assert (folder / "manifest.json").exists()

    # A changed data file or representation is another key: rebuilt, never read stale.
    write_data(tmp_path / "mine", extra=" indeed")
    changed, _ = build()
    assert changed.stats["computed_batches"] == 3 and changed.stats["loaded_shards"] == 0
    other, _ = build(**{"model.representation": "scalar_mix"})
    assert other.stats["computed_batches"] == 3
    assert len(list((cache_dir / "mine").iterdir())) == 3


def test_encoder_pass_packs_inputs_when_the_batches_do_not(tiny_bert_dir, tmp_path, monkeypatch):
    """The BiLSTM tagger's batches are one sentence per row, yet the cache's encoder pass packs
    its inputs (block-diagonal attention): every input's stored features equal those of a pass
    with one input per row (<= 1e-5), from fewer extraction batches."""
    stores, batches = {}, {}
    packing = features.PACK_SLOTS
    for slots in (packing, 0):
        monkeypatch.setattr(features, "PACK_SLOTS", slots)
        cfg = config(tiny_bert_dir, **{"model.representation": "scalar_mix",
                                       "model.tagger_bilstm": 8, "model.head": "linear",
                                       "model.pooling": "mean",
                                       "data.packing": False})  # fmt: skip
        r, stage = stage_of(cfg, tmp_path / str(slots))
        assert all("segment_ids" not in td.eval_batches[0] for td in r.tasks)
        graphdef, state = nnx.split(r.model, nnx.Param)
        stage.features.prepare(graphdef, nnx.to_pure_dict(state), tmp_path / str(slots))
        stores[slots] = {td.task.name: stage.features.stores[td.index] for td in r.tasks}
        batches[slots] = stage.features.stats["computed_batches"]
    packed, unpacked = stores[packing], stores[0]
    assert batches[packing] < batches[0]
    for name, store in unpacked.items():
        assert store.index == packed[name].index
        for uid in store.index.values():
            np.testing.assert_allclose(packed[name].rows(uid), store.rows(uid), atol=TOL, rtol=0)


def test_second_run_and_resume_never_run_the_encoder(tiny_bert_dir, tmp_path, monkeypatch):
    """A multitask run with feature extraction: the first run computes the cache (the encoder
    runs only there). A second run on the same cache, stopped by SIGTERM after step 2 and
    resumed from its checkpoint, traces no encoder call at all (training, evaluation,
    predictions) and ends with the first run's results."""
    import signal

    from jaxtl import train
    from jaxtl.models import bert
    from jaxtl.regimes import multitask

    calls = []
    original = bert.BertEncoder.__call__

    def counted(self, *a, **k):
        calls.append(1)
        return original(self, *a, **k)

    monkeypatch.setattr(bert.BertEncoder, "__call__", counted)
    stop_at = [0]
    signal_hook = train.Trainer._signal_hook

    def preempt(self, ev):
        if ev.step == stop_at[0]:
            self._signal = signal.SIGTERM
        return signal_hook(self, ev)

    monkeypatch.setattr(train.Trainer, "_signal_hook", preempt)
    cfg = config(tiny_bert_dir, **{"features.cache": "auto", "features.dir": str(tmp_path / "c"),
                                   "checkpoint.every_steps": 2})  # fmt: skip
    first = multitask.run(cfg, str(tmp_path / "wd0"))["joint"]
    assert calls, "the first run extracts the features"
    calls.clear()
    stop_at[0] = 2
    with pytest.raises(train.Preempted):
        multitask.run(cfg, str(tmp_path / "wd1"))
    stop_at[0] = 0
    resumed = multitask.run(cfg, str(tmp_path / "wd1"))["joint"]
    assert not calls, "the encoder ran although every feature was cached"
    assert resumed == first


@pytest.mark.slow  # about 70 s on the shared 2-core CPU: launch.py start-up and two stages
def test_launch_feature_extraction_with_cache(tiny_bert_dir, tmp_path):
    wd = tmp_path / "wd"
    cmd = [
        sys.executable, str(REPO / "launch.py"), "--regime=supervised_sequential",
        f"--workdir={wd}", f"--config={REPO / 'configs' / 'supervised_sequential.py'}:tiny",
        f"--config.model.name={tiny_bert_dir}", "--config.source.steps=4",
        "--config.train.steps=6", "--config.optim.strategy=feature_extraction",
    ]  # fmt: skip
    env = dict(os.environ, XLA_FLAGS=xla_flags(1))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    # the source stage fine-tunes (no cache); the target stage's encoder is frozen: cached, with
    # the encoder as the source stage left it
    [folder] = list((wd / "features").iterdir())
    [key] = list(folder.iterdir())
    manifest = json.loads((key / "manifest.json").read_text())
    assert manifest["stored"] == "pooled:cls" and manifest["task"] == "builtin/sentiment"
    assert "feature cache ready" in p.stderr
    results = json.loads((wd / "results.json").read_text())
    assert "accuracy" in results["builtin/sentiment"]


def test_long_tagging_texts_are_tagged_in_windows_by_the_frozen_encoder(
    tiny_bert_dir, tmp_path, caplog
):
    """A feature-cached tagging stage whose dev split holds a text past ``data.max_length`` (32
    tokens): the cache holds the texts as cut, so the selected model's frozen encoder runs on
    that text's windows. Every word of the dev records gets a tag, and ``--predict`` on the dev
    file (no cache: the whole model) gives results.json's scores (1e-9)."""
    from jaxtl.predictor import predict_command
    from jaxtl.regimes import multitask

    words = ("Anna flew to Paris and then the film opened in Rome while Lima is far " * 3).split()
    sentences = {"train": ["Anna flew to Paris .", "Lima is far ."],
                 "dev": ["Rome is far .", " ".join(words + ["."])]}  # fmt: skip
    for split, sents in sentences.items():
        (tmp_path / f"{split}.conll").write_text("".join(
            f"{w} {'B-LOC' if w[0].isupper() else 'O'}\n" + ("\n" if w == "." else "")
            for s in sents for w in s.split()
        ))  # fmt: skip
    spec = f"file:name=ner,path={tmp_path}/{{split}}.conll"
    cfg = config(tiny_bert_dir, **{"tasks.names": (spec,), "optim.lr": 1e-3})
    wd = tmp_path / "wd"
    with caplog.at_level("INFO"):
        results = multitask.run(cfg, str(wd))["joint"]
    assert "feature cache ready" in caplog.text  # the stage trained on cached features
    assert "1 dev text longer than data.max_length tagged in windows" in caplog.text
    rows = (wd / "predictions" / "ner" / "dev.jsonl").read_text().splitlines()
    long = json.loads(rows[1])
    assert len(long["tags"]) == len(words) + 1 and None not in long["tags"]
    _, scores = predict_command(
        str(wd), str(tmp_path / "dev.conll"), str(tmp_path / "p.jsonl"), "ner"
    )
    assert scores == pytest.approx(results["ner"], abs=1e-9)
    assert scores == pytest.approx(json.loads((wd / "results.json").read_text())["ner"], abs=1e-9)
