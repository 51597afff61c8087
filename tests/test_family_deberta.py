"""DeBERTa-v2/v3 (``deberta-v2``) against transformers 5's DebertaV2* models: every hidden state,
the log buckets, restricted (pair) masks, the MLM heads, task-model export, task checkpoints,
config errors, sharding names, bf16, and one in-process multitask run on 8 fake devices.

Tiny random HF models (width 32, 2 layers, 4 heads) get noise on every parameter (``jitter``:
fresh LayerNorms are 1/0 and would hide a misplaced tensor). Sequences are 20 tokens long with
``position_buckets=8`` (exact distances below 4, log buckets above), so the c2p/p2c gathers and
the bucketing are exercised. Tolerance: 1e-5 absolute (fp32) at real positions.
"""

from __future__ import annotations

import json
import string

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch", reason="transformers (torch) is the reference")
transformers = pytest.importorskip("transformers")

from conftest import small_config  # noqa: E402
from test_export import hf_logits, jaxtl_logits, max_diff, perturbed, task  # noqa: E402
from test_hf_parity import assert_states_close, jax_states, jitter, torch_states  # noqa: E402

from jaxtl import assembly, export, mesh, models  # noqa: E402
from jaxtl import config as config_lib  # noqa: E402
from jaxtl.data import tokenize  # noqa: E402
from jaxtl.models import deberta  # noqa: E402
from jaxtl.objectives import cvt  # noqa: E402
from jaxtl.regimes import multitask  # noqa: E402

TOL = 1e-5
NLI = ("entailment", "neutral", "contradiction")
TAGS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
# DeBERTa-v3's shape in miniature: shared keys, no absolute positions, no token types.
V3 = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
          intermediate_size=64, max_position_embeddings=40, relative_attention=True,
          pos_att_type=["p2c", "c2p"], position_buckets=8, max_relative_positions=-1,
          norm_rel_ebd="layer_norm", share_att_key=True, position_biased_input=False,
          type_vocab_size=0)  # fmt: skip
VARIANTS = {
    "v3": V3,
    # positive max_relative_positions (buckets reach 24, not 40)
    "v3-max24": dict(V3, max_relative_positions=24),
    # DeBERTa-v2 style: separate pos_key_proj / pos_query_proj, absolute positions, token
    # types, a narrower embedding projected up
    "separate-keys": dict(
        V3,
        share_att_key=False,
        position_biased_input=True,
        type_vocab_size=2,
        embedding_size=16,
        max_relative_positions=24,
    ),  # fmt: skip
    # no buckets: distances clipped at +-6; c2p only; no LayerNorm on the relative table
    "c2p-clipped": dict(
        V3,
        position_buckets=-1,
        max_relative_positions=6,
        pos_att_type=["c2p"],
        norm_rel_ebd="none",
        share_att_key=False,
    ),  # fmt: skip
    # p2c only, as "p2c" string form
    "p2c-string": dict(V3, pos_att_type="p2c"),
    # no relative attention: absolute positions only (scale still counts pos_att_type)
    "absolute": dict(V3, relative_attention=False, position_biased_input=True),
}


def hf_config(**kw):
    return transformers.DebertaV2Config(**{**V3, **kw})


def save_jittered(cls, config, path, seed=0):
    torch.manual_seed(seed)
    model = jitter(cls(config)).eval()
    model.save_pretrained(path)
    return model


def long_batch(*, seed: int = 0, length: int = 20, token_types: bool = False):
    """Right-padded batch: lengths 20, 11, 3 cut to ``length`` (ids 3..99, never the pad id 0)."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((3, length), np.int64)
    mask = np.zeros((3, length), np.int64)
    tt = np.zeros((3, length), np.int64)
    for i, n in enumerate([length, min(11, length), min(3, length)]):
        ids[i, :n] = rng.integers(3, 100, n)
        mask[i, :n] = 1
        if token_types:
            tt[i, :n] = (np.arange(n) >= n // 2).astype(np.int64)
    return ids, mask, tt


# --- the encoder -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bucket_size,max_position", [(8, 40), (8, 24), (256, 512), (6, 7), (32, 128)]
)
def test_log_buckets_equal_transformers(bucket_size, max_position):
    from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position

    rel = np.arange(-1500, 1501)
    theirs = make_log_bucket_position(torch.tensor(rel), bucket_size, max_position).long().numpy()
    ours = deberta.log_bucket(rel, bucket_size, max_position)
    assert np.array_equal(ours, theirs), np.flatnonzero(ours != theirs)[:10]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_hidden_state_matches_debertav2model(tmp_path, variant):
    cfg = transformers.DebertaV2Config(**VARIANTS[variant])
    ref = save_jittered(transformers.DebertaV2Model, cfg, tmp_path)
    enc = models.from_pretrained(tmp_path).model
    assert type(enc).__name__ == "DebertaEncoder" and enc.family == "deberta-v2"
    ids, mask, tt = long_batch(token_types=cfg.type_vocab_size > 0)
    tt_arg = tt if cfg.type_vocab_size > 0 else None
    theirs = torch_states(ref, ids, mask, tt_arg)[0]
    assert len(theirs) == 3
    assert_states_close(jax_states(enc, ids, mask, tt_arg), theirs, mask)
    # A short batch reaches only the middle rows of the relative table (the encoder slices it)
    ids5, mask5, tt5 = long_batch(length=5, token_types=True)
    tt5_arg = tt5 if cfg.type_vocab_size > 0 else None
    theirs5 = torch_states(ref, ids5, mask5, tt5_arg)[0]
    assert_states_close(jax_states(enc, ids5, mask5, tt5_arg), theirs5, mask5)
    if cfg.position_biased_input:  # explicit position_ids index the absolute table
        pos = np.broadcast_to((np.arange(20) + 5) % 40, ids.shape).copy()
        theirs = torch_states(ref, ids, mask, tt_arg, position_ids=torch.tensor(pos))[0]
        out = enc(jnp.asarray(ids), jnp.asarray(mask), None if tt_arg is None else jnp.asarray(tt),
                  position_ids=jnp.asarray(pos))  # fmt: skip
        assert_states_close([np.asarray(h) for h in out.hidden_states], theirs, mask)


def test_a_wrong_term_fails_parity(tmp_path, monkeypatch):
    """The parity test can fail: swapping the c2p / p2c gather tables moves the outputs by far
    more than the tolerance."""
    ref = save_jittered(transformers.DebertaV2Model, hf_config(), tmp_path)
    enc = models.from_pretrained(tmp_path).model
    ids, mask, _ = long_batch()
    real = mask.astype(bool)
    theirs = torch_states(ref, ids, mask)[0][-1][real]
    original = deberta.relative_indices
    monkeypatch.setattr(deberta, "relative_indices", lambda cfg, t: original(cfg, t)[::-1])
    ours = jax_states(enc, ids, mask)[-1][real]
    assert np.abs(ours - theirs).max() > 100 * TOL


def test_pair_mask_is_honoured_like_a_3d_attention_mask(tmp_path):
    """``pair_mask`` (CVT's left-context view) replaces the padding mask: transformers'
    encoder given the same [B,T,T] mask agrees at every real position."""
    ref = save_jittered(transformers.DebertaV2Model, hf_config(), tmp_path)
    enc = models.from_pretrained(tmp_path).model
    ids, mask, _ = long_batch(seed=1)
    pm = cvt.pair_mask(jnp.asarray(mask), "forward")
    out = enc(jnp.asarray(ids), jnp.asarray(mask), pair_mask=pm)
    with torch.no_grad():
        emb = ref.embeddings(input_ids=torch.tensor(ids), mask=torch.tensor(mask))
        hf_mask = torch.tensor(np.asarray(pm[:, 0]).astype(np.int64))
        theirs = ref.encoder(emb, hf_mask, output_hidden_states=True).hidden_states
    assert_states_close([np.asarray(h) for h in out.hidden_states],
                        [h.numpy() for h in theirs], mask)  # fmt: skip
    # and it matters: the full-context output differs
    full = np.asarray(enc(jnp.asarray(ids), jnp.asarray(mask)).last_hidden_state)
    assert np.abs(full[0, :-1] - np.asarray(out.last_hidden_state)[0, :-1]).max() > 1e-2


@pytest.mark.parametrize("variant", ["v3", "separate-keys"])
def test_packed_row_equals_each_example_alone(tmp_path, variant):
    """Two examples packed in one row (a block-diagonal ``pair_mask``, ``position_ids``
    restarting at 0): relative positions are index differences, so each example's states equal
    transformers' on the example alone (absolute positions too, through ``position_ids``)."""
    cfg = transformers.DebertaV2Config(**VARIANTS[variant])
    ref = save_jittered(transformers.DebertaV2Model, cfg, tmp_path)
    enc = models.from_pretrained(tmp_path).model
    rng = np.random.default_rng(2)
    a, b = rng.integers(3, 100, 7), rng.integers(3, 100, 9)
    ids = np.zeros((1, 20), np.int64)
    ids[0, :16] = np.concatenate([a, b])
    seg = np.array([[1] * 7 + [2] * 9 + [0] * 4])
    pos = np.array([list(range(7)) + list(range(9)) + [0] * 4])
    pm = (seg[:, :, None] == seg[:, None, :]) & (seg > 0)[:, None, :] | np.eye(20, dtype=bool)
    out = enc(jnp.asarray(ids), jnp.asarray((seg > 0).astype(np.int64)),
              pair_mask=jnp.asarray(pm[:, None]), position_ids=jnp.asarray(pos))  # fmt: skip
    ours = [np.asarray(h)[0] for h in out.hidden_states]
    for x, sl in ((a, slice(0, 7)), (b, slice(7, 16))):
        alone = torch_states(ref, x[None], np.ones((1, len(x)), np.int64))[0]
        diff = max(np.abs(o[sl] - t[0]).max() for o, t in zip(ours, alone))
        assert diff <= TOL, f"packed example differs by {diff:.2e}"


def test_save_pretrained_round_trip_loads_in_transformers(tmp_path):
    enc = models.build_encoder("deberta-v2", VARIANTS["separate-keys"], rngs=nnx.Rngs(3))
    out = models.save_pretrained(enc, tmp_path / "out", hf_config=VARIANTS["separate-keys"])
    ref = transformers.AutoModel.from_pretrained(str(out)).eval()
    assert type(ref).__name__ == "DebertaV2Model"
    ids, mask, tt = long_batch(token_types=True)
    assert_states_close(jax_states(enc, ids, mask, tt), torch_states(ref, ids, mask, tt)[0], mask)


@pytest.mark.parametrize("legacy", [True, False])
def test_mlm_head_matches_debertav2formaskedlm(tmp_path, legacy):
    """``legacy=True``: ``cls.predictions`` (decoder tied to the word embeddings and to
    ``cls.predictions.bias``); ``legacy=False``: ``lm_predictions.lm_head``. Both load, match,
    and export back to a DebertaV2ForMaskedLM with the same logits."""
    ref = save_jittered(transformers.DebertaV2ForMaskedLM, hf_config(legacy=legacy), tmp_path)
    model = models.from_pretrained(tmp_path, load_lm_head=True).model
    assert isinstance(model.heads["lm"], models.MLMHead)
    ids, mask, _ = long_batch()
    _, feats = model.features(jnp.asarray(ids), jnp.asarray(mask))
    ours = np.asarray(model.heads["lm"](feats, model.encoder.tied_embedding()))
    assert max_diff(ours, hf_logits(ref, ids, mask, None), mask) <= TOL
    out = models.save_pretrained(model, tmp_path / "export")
    again = transformers.AutoModelForMaskedLM.from_pretrained(str(out)).eval()
    assert type(again).__name__ == "DebertaV2ForMaskedLM" and again.config.legacy == legacy
    assert max_diff(ours, hf_logits(again, ids, mask, None), mask) <= TOL


# --- task heads --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return models.save_pretrained(
        models.build_encoder("deberta-v2", V3, rngs=nnx.Rngs(0)),
        tmp_path_factory.mktemp("deberta"),
        hf_config=V3,
    )


def build(path, tds):
    enc, tok, cfg, _ = models.from_pretrained(path)
    return assembly.build_model(enc, tds, config_lib.base_config()), tok, cfg


def test_sequence_classification_export_reloads_in_transformers(base_dir, tmp_path):
    td = task("classification", NLI)
    model, tok, cfg = build(base_dir, [td])
    head = model.heads[td.key]
    assert head.dense is not None and head.activation == "gelu" and not head.input_dropout
    params = perturbed(model)
    rep = export.export_task_model(model, params, td, tmp_path / "out", tokenizer=tok,
                                   hf_config=cfg, family="deberta-v2")  # fmt: skip
    assert rep["format"] == "transformers" and rep["reason"] is None, rep
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    assert type(hf).__name__ == "DebertaV2ForSequenceClassification"
    assert hf.config.id2label == dict(enumerate(NLI))
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["cls_dropout"] == head.dropout
    ids, mask, _ = long_batch()
    ours = jaxtl_logits(model, params, td.key, ids, mask, None)
    assert max_diff(ours, hf_logits(hf, ids, mask, None)) <= TOL


def test_token_classification_export_reloads_in_transformers(base_dir, tmp_path):
    td = task("tagging", TAGS)
    model, tok, cfg = build(base_dir, [td])
    params = perturbed(model, seed=2)
    rep = export.export_task_model(model, params, td, tmp_path / "out", hf_config=cfg)
    assert rep["format"] == "transformers", rep
    hf = transformers.AutoModelForTokenClassification.from_pretrained(tmp_path / "out")
    assert type(hf).__name__ == "DebertaV2ForTokenClassification"
    ids, mask, _ = long_batch()
    ours = jaxtl_logits(model, params, td.key, ids, mask, None)
    assert max_diff(ours, hf_logits(hf, ids, mask, None), mask) <= TOL


def test_qa_export_reloads_in_transformers(base_dir, tmp_path):
    td = task("qa")
    model, tok, cfg = build(base_dir, [td])
    params = perturbed(model, seed=3)
    rep = export.export_task_model(model, params, td, tmp_path / "out", hf_config=cfg)
    assert rep["format"] == "transformers", rep
    hf = transformers.AutoModelForQuestionAnswering.from_pretrained(tmp_path / "out").eval()
    assert type(hf).__name__ == "DebertaV2ForQuestionAnswering"
    ids, mask, _ = long_batch()
    ours = jaxtl_logits(model, params, td.key, ids, mask, None)
    with torch.no_grad():
        got = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
    assert max_diff(ours[..., 0], got.start_logits.numpy(), mask) <= TOL
    assert max_diff(ours[..., 1], got.end_logits.numpy(), mask) <= TOL


def test_lora_merged_export_and_peft_adapter(base_dir, tmp_path):
    """LoRA on every projection (with shared keys the query/key LoRA also moves the relative
    table's projections, in transformers + PEFT as here): the merged task model and the PEFT
    adapter on the base checkpoint both give jaxtl's logits."""
    peft_lib = pytest.importorskip("peft")
    td = task("classification", NLI)
    c = config_lib.base_config()
    c.optim.strategy = "lora"
    c.optim.lora_rank, c.optim.lora_alpha, c.optim.lora_mlp = 4, 8.0, True
    enc, _, cfg, _ = models.from_pretrained(base_dir)
    model = assembly.build_model(enc, [td], c)
    params = perturbed(model, seed=4, where=lambda p: "lora_" in p or p.startswith("heads/"))
    ids, mask, _ = long_batch()
    ours = jaxtl_logits(model, params, td.key, ids, mask, None)
    heads_only = perturbed(model, seed=4, where=lambda p: p.startswith("heads/"))
    assert max_diff(ours, jaxtl_logits(model, heads_only, td.key, ids, mask, None)) > 1e-3
    export.export_task_model(model, params, td, tmp_path / "merged", hf_config=cfg)
    merged = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged")
    assert max_diff(ours, hf_logits(merged, ids, mask, None)) <= TOL
    export.export_peft_adapter(model, params, td, tmp_path / "adapter", base_hf_config=cfg,
                               base_dir=base_dir)  # fmt: skip
    written = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert "attention.self.query_proj" in written["target_modules"], written
    assert written["modules_to_save"] == ["classifier", "pooler"]
    base = transformers.AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=3)
    loaded = peft_lib.PeftModel.from_pretrained(base, tmp_path / "adapter")
    assert max_diff(ours, hf_logits(loaded, ids, mask, None)) <= TOL


def test_task_checkpoint_loads_and_its_head_is_reused(tmp_path):
    """A DebertaV2ForSequenceClassification checkpoint ("deberta." prefix, top-level
    ``pooler.dense`` and ``classifier``): the encoder loads and the default head *is* its head."""
    cfg = hf_config(id2label=dict(enumerate(NLI)))
    ref = save_jittered(transformers.DebertaV2ForSequenceClassification, cfg, tmp_path)
    td = task("classification", NLI)
    model, _, _ = build(tmp_path, [td])
    entry = model.init_report.to_json()["tasks"][td.task.name]
    assert entry["classifier"] == "reused", entry
    ids, mask, _ = long_batch()
    ours = jaxtl_logits(model, None, td.key, ids, mask, None)
    assert max_diff(ours, hf_logits(ref, ids, mask, None)) <= TOL


# --- config errors, sharding names, bf16 -------------------------------------------------------


@pytest.mark.parametrize(
    "edit,message",
    [
        ({"conv_kernel_size": 3}, "unsupported config attribute conv_kernel_size=3"),
        ({"pos_att_type": ["c2p", "p2p"]}, r"unsupported config attribute pos_att_type=\['c2p'"),
        ({"norm_rel_ebd": "layer_norm|foo"}, "unsupported config attribute norm_rel_ebd="),
        ({"attention_head_size": 16}, "unsupported config attribute attention_head_size=16"),
        ({"pooler_hidden_size": 16}, "unsupported config attribute pooler_hidden_size=16"),
        ({"pooler_hidden_act": "tanh"}, "unsupported config attribute pooler_hidden_act='tanh'"),
        ({"hidden_act": "quick_gelu"}, "unsupported config attribute hidden_act='quick_gelu'"),
        ({"hidden_size": 30}, "hidden_size=30 is not divisible by num_attention_heads=4"),
        ({"num_hidden_layers": None}, "lacks required attribute 'num_hidden_layers'"),
    ],
)
def test_config_errors_name_the_attribute(edit, message):
    cfg = {k: v for k, v in {**V3, **edit}.items() if v is not None}
    with pytest.raises(ValueError, match=message) as e:
        models.build_encoder("deberta-v2", cfg, rngs=nnx.Rngs(0))
    assert "\n" not in str(e.value)


def test_unsupported_checkpoint_config_is_refused_on_load(tmp_path):
    save_jittered(transformers.DebertaV2Model, hf_config(), tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "conv_kernel_size": 3}))
    with pytest.raises(ValueError, match="conv_kernel_size=3"):
        models.from_pretrained(tmp_path)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_sharded_half_precision_checkpoint_loads(tmp_path, dtype):
    """A checkpoint saved in fp16 / bf16 and sharded (``model.safetensors.index.json``) loads
    into float32 parameters and matches the same weights in transformers."""
    torch.manual_seed(0)
    ref = jitter(transformers.DebertaV2Model(hf_config())).eval().to(getattr(torch, dtype))
    ref.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    enc = models.from_pretrained(tmp_path).model
    assert enc.embeddings.relative.embedding[...].dtype == jnp.float32
    ids, mask, _ = long_batch()
    assert_states_close(jax_states(enc, ids, mask), torch_states(ref.float(), ids, mask)[0], mask)


def test_parameter_paths_and_logical_axes():
    """BERT's block paths (LoRA targets, freezing rules) plus the relative table under
    ``embeddings/``; every parameter carries logical axis names."""
    names = mesh.logical_specs(nnx.state(
        models.build_encoder("deberta-v2", VARIANTS["separate-keys"], rngs=nnx.Rngs(0)), nnx.Param
    ))  # fmt: skip
    assert all(names.values()), [k for k, v in names.items() if not v]
    assert names["layers/0/attention/query/kernel"] == ("embed", "heads")
    assert names["layers/0/attention/pos_key/kernel"] == ("embed", "heads")
    assert names["layers/0/attention/output/kernel"] == ("heads", "embed")
    assert names["layers/1/mlp/intermediate/kernel"] == ("embed", "mlp")
    assert names["embeddings/relative/embedding"] == (None, "embed")
    assert names["embeddings/word/embedding"] == ("vocab", "embed")
    assert {"embeddings/relative_norm/scale", "embeddings/project/kernel"} <= set(names)


def test_bfloat16_compute(tmp_path):
    save_jittered(transformers.DebertaV2Model, hf_config(), tmp_path)
    enc = models.from_pretrained(tmp_path).model
    enc16 = models.from_pretrained(tmp_path, dtype=jnp.bfloat16).model
    assert enc16.layers[0].attention.query.kernel[...].dtype == jnp.float32
    ids, mask, _ = long_batch()
    a = jax_states(enc, ids, mask)
    out = enc16(jnp.asarray(ids), jnp.asarray(mask))
    assert all(h.dtype == jnp.bfloat16 for h in out.hidden_states)
    real = mask.astype(bool)
    # bf16 keeps 8 mantissa bits; two LayerNorm'd layers of O(1) values stay within a few 1e-2.
    assert np.abs(a[-1][real] - np.asarray(out.last_hidden_state, np.float32)[real]).max() < 0.1


# --- the tokenizer and one multitask run ------------------------------------------------------


def deberta_dir(path):
    """A tiny DeBERTa-v3 with a real DebertaV2Tokenizer (fast; SentencePiece-style Unigram) built
    offline over characters: [PAD] [CLS] [SEP] [UNK], "▁", printable characters, [MASK]."""
    pieces = ["▁"] + [c for c in string.printable if not c.isspace()]
    vocab = [("[PAD]", 0.0), ("[CLS]", 0.0), ("[SEP]", 0.0), ("[UNK]", 0.0)]
    vocab += [(p, -1.0) for p in pieces] + [("[MASK]", 0.0)]
    tok = transformers.DebertaV2Tokenizer(vocab=vocab)
    cfg = dict(V3, vocab_size=len(vocab), max_position_embeddings=64)
    enc = models.build_encoder("deberta-v2", cfg, rngs=nnx.Rngs(0))
    models.save_pretrained(enc, path, tokenizer=tok, hf_config=cfg)
    return path


def test_sentencepiece_tokenizer_round_trip(tmp_path):
    """The model dir's DebertaV2Tokenizer loads back as one, is a SentencePiece tokenizer for
    whole-word masking, and sentence pairs (with token_type_ids, dropped by a model with no
    token-type table, as in transformers) match transformers."""
    pre = models.from_pretrained(deberta_dir(tmp_path))
    tok = pre.tokenizer
    assert type(tok).__name__ == "DebertaV2Tokenizer" and tok.is_fast
    assert (tok.pad_token_id, tok.cls_token_id, tok.sep_token_id) == (0, 1, 2)
    assert tokenize.tokenizer_kind(tok) == "sentencepiece"
    ref = transformers.AutoModel.from_pretrained(str(tmp_path)).eval()
    b = tok(["Alice met Bob.", "ok"], ["In Paris", "no"], padding=True, return_tensors="np")
    assert b["token_type_ids"].max() == 1
    theirs = torch_states(ref, b["input_ids"], b["attention_mask"], b["token_type_ids"])[0]
    ours = jax_states(pre.model, b["input_ids"], b["attention_mask"], b["token_type_ids"])
    assert_states_close(ours, theirs, b["attention_mask"])


def test_multitask_smoke_fsdp(tmp_path):
    """Classification + tagging through the multitask regime on a tiny DeBERTa-v3 with its own
    kind of tokenizer, FSDP over the 8 fake CPU devices (data 4 x fsdp 2): parameters and
    moments sharded."""
    path = deberta_dir(tmp_path / "model")
    c = multitask.add_config(config_lib.base_config())
    c.tasks.names = ("builtin/sentiment", "builtin/ner")
    # max_length 32 too: the tokenizer here is character-level, so sentences run long.
    c = small_config(c, path, **{"train.steps": 3, "data.max_length": 32, "mesh.fsdp": 2})
    multitask.run(c, str(tmp_path / "work"))
    results = json.loads((tmp_path / "work" / "results.json").read_text())
    assert {"builtin/sentiment", "builtin/ner"} <= set(results), results
    assert all(np.isfinite(v) for r in results.values() if isinstance(r, dict)
               for v in r.values() if isinstance(v, float))  # fmt: skip
