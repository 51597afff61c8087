"""DeBERTa v1 (``deberta``: deberta-base/large and their fine-tunes) against transformers 5's
Deberta* models: every hidden state, packed rows, the fused ``in_proj`` split on load and joined
on export (bit for bit), the MLM heads, task exports, LoRA merged and as a PEFT adapter on
``in_proj``, config errors and a byte-level BPE tokenizer through a command-line run.

Tiny random models (width 32, 2 layers, 4 heads) with noise on every parameter (``jitter``),
sequences of 20 tokens: 1e-5 absolute at real positions (fp32), as the DeBERTa-v2 tests.
"""

from __future__ import annotations

import json
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch", reason="transformers (torch) is the reference")
transformers = pytest.importorskip("transformers")

from test_export import hf_logits, jaxtl_logits, max_diff, perturbed, task  # noqa: E402
from test_family_deberta import NLI, TAGS, TOL, long_batch, save_jittered  # noqa: E402
from test_hf_parity import assert_states_close, jax_states, torch_states  # noqa: E402

from jaxtl import assembly, export, models, peft  # noqa: E402
from jaxtl import config as config_lib  # noqa: E402
from jaxtl.data import tokenize  # noqa: E402
from jaxtl.models import deberta, hf  # noqa: E402

# deberta-base's shape in miniature: c2p and p2c, no absolute positions, no token types, the
# relative table as wide as the position table.
V1 = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
          intermediate_size=64, max_position_embeddings=40, relative_attention=True,
          pos_att_type="c2p|p2c", max_relative_positions=-1, position_biased_input=False,
          type_vocab_size=0)  # fmt: skip
VARIANTS = {
    "base": V1,
    # distances clipped at +-6 (shorter than the 20-token rows), absolute positions, token
    # types and a narrower embedding projected up
    "clipped": dict(
        V1,
        max_relative_positions=6,
        position_biased_input=True,
        type_vocab_size=2,
        embedding_size=16,
    ),  # fmt: skip
    "c2p": dict(V1, pos_att_type=["c2p"]),
    "p2c": dict(V1, pos_att_type=["p2c"]),
}


def hf_config(**kw):
    return transformers.DebertaConfig(**{**V1, **kw})


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_hidden_state_matches_debertamodel(tmp_path, variant):
    cfg = transformers.DebertaConfig(**VARIANTS[variant])
    ref = save_jittered(transformers.DebertaModel, cfg, tmp_path)
    enc = models.from_pretrained(tmp_path).model
    assert type(enc).__name__ == "DebertaEncoder" and enc.family == "deberta"
    for length in (20, 5):
        ids, mask, tt = long_batch(length=length, token_types=cfg.type_vocab_size > 0)
        tt_arg = tt if cfg.type_vocab_size > 0 else None
        theirs = torch_states(ref, ids, mask, tt_arg)[0]
        assert_states_close(jax_states(enc, ids, mask, tt_arg), theirs, mask)


def test_the_fused_in_proj_is_split_head_by_head(tmp_path, monkeypatch):
    """The parity test can fail: reading ``in_proj`` as three blocks (q, k, v stacked, as
    Phi-3's qkv_proj) instead of head-interleaved moves the outputs far beyond the tolerance."""
    ref = save_jittered(transformers.DebertaModel, hf_config(), tmp_path)
    ids, mask, _ = long_batch()
    theirs = torch_states(ref, ids, mask)[0][-1][mask.astype(bool)]
    original = deberta.fused_linear
    monkeypatch.setattr(deberta, "fused_linear", lambda h, parts, groups: original(h, parts))
    # 8 rows per part in one block: a clear error, not a silent slice of the first 24 rows
    with pytest.raises(ValueError, match=r"checkpoint \(96, 32\), expected 24 rows"):
        models.from_pretrained(tmp_path)
    stacked = lambda h, parts, groups: original(h, [(p, n * groups) for p, n in parts])  # noqa: E731
    monkeypatch.setattr(deberta, "fused_linear", stacked)
    ours = jax_states(models.from_pretrained(tmp_path).model, ids, mask)[-1][mask.astype(bool)]
    assert np.abs(ours - theirs).max() > 100 * TOL


def test_packed_row_equals_each_example_alone(tmp_path):
    """v1 reads the relative table centred on the sequence's own span; a packed row (index
    differences within a segment, positions restarting) still gives each example's states."""
    ref = save_jittered(transformers.DebertaModel, hf_config(**VARIANTS["clipped"]), tmp_path)
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


def test_export_joins_in_proj_bit_for_bit(tmp_path):
    """Load, save: every tensor of the checkpoint comes back identical (the fused ``in_proj``
    joined from its three parts), and the export loads as a DebertaModel with v1's attributes."""
    save_jittered(transformers.DebertaModel, hf_config(**VARIANTS["clipped"]), tmp_path / "in")
    pre = models.from_pretrained(tmp_path / "in")
    out = models.save_pretrained(pre.model, tmp_path / "out", hf_config=pre.hf_config)
    before = hf.read_tensors(tmp_path / "in")
    after = hf.read_tensors(out)
    assert set(after) == set(before)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    written = json.loads((out / "config.json").read_text())
    assert written["model_type"] == "deberta" and "position_buckets" not in written
    again = transformers.AutoModel.from_pretrained(str(out))
    assert type(again).__name__ == "DebertaModel"


@pytest.mark.parametrize("legacy", [True, False])
def test_mlm_head_matches_debertaformaskedlm(tmp_path, legacy):
    ref = save_jittered(transformers.DebertaForMaskedLM, hf_config(legacy=legacy), tmp_path)
    model = models.from_pretrained(tmp_path, load_lm_head=True).model
    ids, mask, _ = long_batch()
    _, feats = model.features(jnp.asarray(ids), jnp.asarray(mask))
    ours = np.asarray(model.heads["lm"](feats, model.encoder.tied_embedding()))
    assert max_diff(ours, hf_logits(ref, ids, mask, None), mask) <= TOL
    out = models.save_pretrained(model, tmp_path / "export")
    again = transformers.AutoModelForMaskedLM.from_pretrained(str(out)).eval()
    assert type(again).__name__ == "DebertaForMaskedLM" and again.config.legacy == legacy
    assert max_diff(ours, hf_logits(again, ids, mask, None), mask) <= TOL


# --- task heads --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("deberta-v1")
    save_jittered(transformers.DebertaModel, hf_config(), path)
    return path


def build(path, tds, c=None):
    enc, tok, cfg, _ = models.from_pretrained(path)
    return assembly.build_model(enc, tds, c or config_lib.base_config()), tok, cfg


@pytest.mark.parametrize(
    "kind,auto,labels",
    [
        ("classification", "AutoModelForSequenceClassification", NLI),
        ("tagging", "AutoModelForTokenClassification", TAGS),
        ("qa", "AutoModelForQuestionAnswering", ()),
    ],
)
def test_task_exports_reload_in_transformers(base_dir, tmp_path, kind, auto, labels):
    td = task(kind, labels)
    model, _, cfg = build(base_dir, [td])
    params = perturbed(model, seed=2)
    rep = export.export_task_model(model, params, td, tmp_path / "out", hf_config=cfg)
    assert rep["format"] == "transformers" and rep["reason"] is None, rep
    theirs = getattr(transformers, auto).from_pretrained(tmp_path / "out").eval()
    assert type(theirs).__name__.startswith("DebertaFor")
    ids, mask, _ = long_batch()
    ours = jaxtl_logits(model, params, td.key, ids, mask, None)
    with torch.no_grad():
        got = theirs(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
    if kind == "qa":
        assert max_diff(ours[..., 0], got.start_logits.numpy(), mask) <= TOL
        assert max_diff(ours[..., 1], got.end_logits.numpy(), mask) <= TOL
    else:
        assert max_diff(ours, got.logits.numpy(), mask if kind == "tagging" else None) <= TOL


def test_task_checkpoint_loads_and_its_head_is_reused(tmp_path):
    ref = save_jittered(transformers.DebertaForSequenceClassification,
                        hf_config(id2label=dict(enumerate(NLI))), tmp_path)  # fmt: skip
    td = task("classification", NLI)
    model, _, _ = build(tmp_path, [td])
    assert model.init_report.to_json()["tasks"][td.task.name]["classifier"] == "reused"
    ids, mask, _ = long_batch()
    assert max_diff(jaxtl_logits(model, None, td.key, ids, mask, None),
                    hf_logits(ref, ids, mask, None)) <= TOL  # fmt: skip


def test_lora_merged_export_and_peft_adapter_on_in_proj(base_dir, tmp_path):
    """LoRA on the query, key, value and output (and the MLP): transformers holds the first
    three in one ``in_proj``, so the adapter has one factor pair there of rank 3r (alpha 3a,
    in ``rank_pattern`` / ``alpha_pattern``); PEFT on the base checkpoint gives jaxtl's logits,
    as does the merged model."""
    peft_lib = pytest.importorskip("peft")
    td = task("classification", NLI)
    c = config_lib.base_config()
    c.optim.strategy = "lora"
    c.optim.lora_rank, c.optim.lora_alpha, c.optim.lora_mlp = 4, 8.0, True
    model, _, cfg = build(base_dir, [td], c)
    assert isinstance(model.encoder.layers[0].attention.key, peft.LoRALinear)
    params = perturbed(model, seed=4, where=lambda p: "lora_" in p or p.startswith("heads/"))
    ids, mask, _ = long_batch()
    ours = jaxtl_logits(model, params, td.key, ids, mask, None)
    export.export_task_model(model, params, td, tmp_path / "merged", hf_config=cfg)
    merged = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged")
    assert max_diff(ours, hf_logits(merged, ids, mask, None)) <= TOL
    export.export_peft_adapter(model, params, td, tmp_path / "adapter", base_hf_config=cfg,
                               base_dir=base_dir)  # fmt: skip
    written = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert "attention.self.in_proj" in written["target_modules"], written
    assert (written["r"], written["lora_alpha"]) == (4, 8.0)
    in_proj = r"attention\.self\.in_proj"  # the same in every layer: one key
    assert written["rank_pattern"] == {in_proj: 12} and written["alpha_pattern"] == {in_proj: 24.0}
    base = transformers.AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=3)
    loaded = peft_lib.PeftModel.from_pretrained(base, tmp_path / "adapter")
    assert max_diff(ours, hf_logits(loaded, ids, mask, None)) <= TOL


def test_peft_adapter_with_only_query_and_value_targeted(base_dir, tmp_path):
    """Two of in_proj's three parts under LoRA: the key's rows of lora_B stay zero, every module
    has rank 2r, and PEFT reproduces jaxtl."""
    peft_lib = pytest.importorskip("peft")
    td = task("classification", NLI)
    enc, _, cfg, _ = models.from_pretrained(base_dir)
    model = assembly.build_model(enc, [td], config_lib.base_config())
    peft.apply_lora(model, rank=2, alpha=4.0, attention_targets=("query", "value"),
                    rngs=nnx.Rngs(0))  # fmt: skip
    params = perturbed(model, seed=5, where=lambda p: "lora_" in p or p.startswith("heads/"))
    ids, mask, _ = long_batch()
    ours = jaxtl_logits(model, params, td.key, ids, mask, None)
    export.export_peft_adapter(model, params, td, tmp_path / "adapter", base_hf_config=cfg)
    written = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert (written["r"], written["lora_alpha"], written["rank_pattern"]) == (4, 8.0, {})
    base = transformers.AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=3)
    loaded = peft_lib.PeftModel.from_pretrained(base, tmp_path / "adapter")
    assert max_diff(ours, hf_logits(loaded, ids, mask, None)) <= TOL


# --- config errors, the tokenizer, the command line --------------------------------------------


@pytest.mark.parametrize(
    "edit,message",
    [
        ({"talking_head": True}, "unsupported config attribute talking_head=True"),
        ({"pos_att_type": "c2p|p2p"}, "unsupported config attribute pos_att_type='c2p|p2p'"),
        ({"hidden_size": 30}, "hidden_size=30 is not divisible by num_attention_heads=4"),
    ],
)
def test_config_errors_name_the_attribute(edit, message):
    with pytest.raises(ValueError, match=message) as e:
        models.build_encoder("deberta", {**V1, **edit}, rngs=nnx.Rngs(0))
    assert "\n" not in str(e.value)


def deberta_v1_dir(path):
    """A tiny DeBERTa v1 with a real DebertaTokenizer (byte-level BPE, as deberta-base's) built
    offline over the 256 byte symbols, no merges."""
    from tokenizers import pre_tokenizers

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {t: i for i, t in enumerate(["[PAD]", "[CLS]", "[SEP]", "[UNK]", *symbols, "[MASK]"])}
    tok = transformers.DebertaTokenizer(vocab=vocab, merges=[])
    cfg = dict(V1, vocab_size=len(vocab), max_position_embeddings=64)
    torch.manual_seed(0)
    transformers.DebertaModel(transformers.DebertaConfig(**cfg)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_a_classifier_trains_from_the_command_line_and_predicts(tmp_path):
    """A user's TSV, LoRA on deberta-v1, then --predict: the export is a
    DebertaForSequenceClassification whose transformers pipeline gives --predict's scores."""
    model_dir = deberta_v1_dir(tmp_path / "model")
    pre = models.from_pretrained(model_dir)
    assert tokenize.tokenizer_kind(pre.tokenizer) == "byte_level_bpe"
    data = tmp_path / "data"
    data.mkdir()
    rows = ["text\tlabel"] + [f"{w} film\t{y}" for w, y in
                              [("great", "pos"), ("awful", "neg"), ("fine", "pos"),
                               ("dull", "neg")] * 4]  # fmt: skip
    for split in ("train", "dev"):
        (data / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    work, export_dir = tmp_path / "work", tmp_path / "export"
    _jaxtl("--regime=multitask", "--config=multitask:tiny", f"--config.model.name={model_dir}", f"--workdir={work}",
           f"--config.tasks.names=file:name=mine,path={data}/{{split}}.tsv",
           "--config.train.steps=4", "--config.optim.strategy=lora",
           f"--config.export_dir={export_dir}")  # fmt: skip
    config = json.loads((export_dir / "mine" / "config.json").read_text())
    assert config["architectures"] == ["DebertaForSequenceClassification"], config
    (tmp_path / "new.txt").write_text("great film\ndull film\n")
    out = tmp_path / "pred.jsonl"
    _jaxtl("--predict", f"--workdir={work}", f"--input={tmp_path / 'new.txt'}", f"--output={out}")
    preds = [json.loads(line) for line in out.read_text().splitlines()]
    pipe = transformers.pipeline("text-classification", model=str(export_dir / "mine"),
                                 top_k=None, device="cpu")  # fmt: skip
    labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    for p, scores in zip(preds, pipe(["great film", "dull film"])):
        theirs = {s["label"]: s["score"] for s in scores}
        np.testing.assert_allclose(p["probs"], [theirs[x] for x in labels], atol=1e-5)


def _jaxtl(*args):
    p = subprocess.run([sys.executable, "-m", "jaxtl", *args], capture_output=True, text=True,
                       timeout=600)  # fmt: skip
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]


def test_adapter_patterns_name_whole_modules_where_layers_differ():
    """Per-module ranks key ``rank_pattern`` by the block suffix only when every layer agrees;
    else by the full module name, so PEFT gives each layer its own rank."""
    shapes = {
        "m.layers.0.self_attn.qkv_proj": (12, 24.0),
        "m.layers.1.self_attn.qkv_proj": (8, 16.0),
        "m.layers.0.self_attn.o_proj": (4, 8.0),
        "m.layers.1.self_attn.o_proj": (4, 8.0),
    }
    common, ranks, alphas = export._peft_patterns(shapes)
    assert common == (4, 8.0)
    assert ranks == {
        r"m\.layers\.0\.self_attn\.qkv_proj": 12,
        r"m\.layers\.1\.self_attn\.qkv_proj": 8,
    }
    assert alphas == {k: 2.0 * v for k, v in ranks.items()}
    uniform = dict(shapes, **{"m.layers.1.self_attn.qkv_proj": (12, 24.0)})
    assert export._peft_patterns(uniform)[1] == {r"self_attn\.qkv_proj": 12}
