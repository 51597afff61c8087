"""T5's encoder (T5, T5 v1.1 / Flan-T5's gated GELU, mT5) against transformers: every hidden
state (right and left padding) of ``T5EncoderModel`` and of a whole ``T5ForConditionalGeneration``
checkpoint's encoder, the bare encoder's and the token classifier's export, mean pooling by
default, packed rows, and config errors.

Tolerance: 1e-5 max abs difference (fp32) on real-token positions, as tests/test_family_llama.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch", reason="transformers (torch) is the reference")
transformers = pytest.importorskip("transformers")

from test_export import NLI, TAGS, build, perturbed, task  # noqa: E402
from test_family_llama import assert_close, export_matches_transformers, ours, padded  # noqa: E402
from test_family_llama_variants import (  # noqa: E402
    assert_packed_rows_match,
    assert_peft_adapter_matches,
)
from test_hf_parity import jitter  # noqa: E402

from jaxtl import export, models  # noqa: E402

# Eight buckets reaching 6 tokens: the 7-token test rows use exact and log buckets both.
TINY = dict(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
            relative_attention_num_buckets=8, relative_attention_max_distance=6)  # fmt: skip
KINDS = {  # name: (model_type, config class, encoder class, seq2seq class, feed_forward_proj)
    "t5": ("t5", "T5Config", "T5EncoderModel", "T5ForConditionalGeneration", "relu"),
    "flan-t5": ("t5", "T5Config", "T5EncoderModel", "T5ForConditionalGeneration", "gated-gelu"),
    "mt5": ("mt5", "MT5Config", "MT5EncoderModel", "MT5ForConditionalGeneration", "gated-gelu"),
    # a relative-position table in every block
    "umt5": (
        "umt5",
        "UMT5Config",
        "UMT5EncoderModel",
        "UMT5ForConditionalGeneration",
        "gated-gelu",
    ),  # fmt: skip
}


def save_hf(kind: str, path, *, whole: bool = False, seed: int = 0):
    _, config_cls, enc_cls, s2s_cls, proj = KINDS[kind]
    config = getattr(transformers, config_cls)(**TINY, feed_forward_proj=proj)
    torch.manual_seed(seed)
    model = jitter(getattr(transformers, s2s_cls if whole else enc_cls)(config)).eval()
    model.save_pretrained(path)
    return model.encoder if whole else model


def states(model, ids, mask):
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                    output_hidden_states=True)  # fmt: skip
    return [h.numpy() for h in out.hidden_states]


@pytest.mark.parametrize("whole", [False, True], ids=["encoder", "seq2seq"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_hidden_state_matches_transformers_with_right_and_left_padding(tmp_path, kind, whole):
    ref = save_hf(kind, tmp_path, whole=whole)
    enc = models.from_pretrained(tmp_path).model
    model_type, _, enc_cls, _, proj = KINDS[kind]
    assert enc.family == model_type and not getattr(enc, "causal", False)
    assert enc.cfg.gated == proj.startswith("gated")
    assert enc.cfg.activation == ("gelu_new" if enc.cfg.gated else "relu")
    for left in (False, True):  # the bias sees the same distances between real tokens
        ids, mask = padded(left=left)
        assert_close(ours(enc, ids, mask), states(ref, ids, mask), mask)
    # The bare encoder saves as transformers' encoder-only class, which loads it exactly.
    out = models.save_pretrained(enc, tmp_path / "export")
    assert json.loads((out / "config.json").read_text())["architectures"] == [enc_cls]
    again = getattr(transformers, enc_cls).from_pretrained(str(out)).eval()
    ids, mask = padded()
    assert_close(ours(enc, ids, mask), states(again, ids, mask), mask)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("flan-t5")
    save_hf("flan-t5", path)
    return path


def test_a_tagger_exports_as_t5_for_token_classification(base_dir, tmp_path):
    td = task("tagging", TAGS)
    model, _, hf_config = build(base_dir, [td])
    export_matches_transformers(model, td, tmp_path / "out", "T5", hf_config)
    from safetensors.numpy import load_file

    names = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert all(n.startswith(("transformer.", "classifier.")) for n in names), sorted(names)[:3]


def test_a_classifier_pools_the_mean_and_exports_in_jaxtls_format(base_dir, tmp_path):
    """T5 has no [CLS] token and transformers no encoder-only sequence classifier."""
    td = task("classification", NLI)
    model, _, hf_config = build(base_dir, [td])
    assert model.heads[td.key].pooling == "mean"
    rep = export.export_task_model(model, perturbed(model), td, tmp_path / "out",
                                   hf_config=hf_config)  # fmt: skip
    assert rep["format"] == "jaxtl"
    assert "model_type 't5' has no transformers head for classification" in rep["reason"]
    # its encoder is T5EncoderModel's (AutoModel would build a decoder beside it)
    assert rep["transformers"].startswith("T5EncoderModel (the encoder only, exact)")
    assert "transformers.T5EncoderModel" in (tmp_path / "out" / "EXPORT.md").read_text()
    transformers.T5EncoderModel.from_pretrained(str(tmp_path / "out"))


def test_packed_rows_give_each_example_its_unpacked_logits():
    hf_config = dict(TINY, vocab_size=30522, feed_forward_proj="gated-gelu")
    assert_packed_rows_match(models.build_encoder("t5", hf_config, rngs=nnx.Rngs(0)))


def test_a_saved_config_reads_back_as_the_same_config():
    for kind, (model_type, *_, proj) in KINDS.items():
        fam = models.FAMILIES[model_type]
        hf_config = dict(TINY, feed_forward_proj=proj)
        cfg = fam.config_from_hf(hf_config)
        assert fam.config_from_hf({**hf_config, **fam.config_to_hf(cfg)}) == cfg, kind


@pytest.mark.parametrize(
    "edit,message",
    [
        ({"feed_forward_proj": "gated-swiglu-x"}, "unsupported config attribute feed_forward_proj"),
        ({"feed_forward_proj": "mish"}, "activation 'mish'"),
        ({"is_decoder": True}, "unsupported config attribute is_decoder=True"),
        ({"d_model": None}, "lacks required attribute 'd_model'"),
    ],
)  # fmt: skip
def test_config_errors_name_the_attribute(edit, message):
    hf_config = {k: v for k, v in {**TINY, **edit}.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        models.build_encoder("t5", hf_config, rngs=nnx.Rngs(0))


def test_a_lora_taggers_peft_adapter_loads_over_t5_for_token_classification(base_dir, tmp_path):
    assert_peft_adapter_matches(base_dir, tmp_path / "adapter", "T5ForTokenClassification",
                                kind="tagging")  # fmt: skip


def t5_dir(path, model_type: str = "t5"):
    """A tiny Flan-T5 (or UMT5) encoder with a byte-level BPE tokenizer for command-line runs."""
    from test_family_llama import byte_level_tokenizer

    tok = byte_level_tokenizer()
    tok.pad_token = "</s>"
    hf_config = dict(TINY, vocab_size=len(tok), feed_forward_proj="gated-gelu")
    enc = models.build_encoder(model_type, hf_config, rngs=nnx.Rngs(0))
    models.save_pretrained(enc, path, tokenizer=tok, hf_config=hf_config)
    return path


def test_umt5_keeps_a_bias_table_per_block_exports_a_tagger_and_packs(tmp_path):
    """UMT5's blocks each look distances up in a table of their own (``layers/<i>/
    relative_bias``, so layer-wise rules cover it); a tagger exports as
    UMT5ForTokenClassification with jaxtl's logits, and packed rows match unpacked ones."""
    save_hf("umt5", tmp_path / "base", seed=1)
    td = task("tagging", TAGS)
    model, _, hf_config = build(tmp_path / "base", [td])
    enc = model.encoder
    assert enc.relative_bias is None and all(b.relative_bias is not None for b in enc.layers)
    a, b = (np.asarray(layer.relative_bias.embedding[...]) for layer in enc.layers)
    assert np.abs(a - b).max() > 1e-3  # two tables, as the checkpoint holds them
    export_matches_transformers(model, td, tmp_path / "out", "UMT5", hf_config)
    hf_config = dict(TINY, vocab_size=30522, feed_forward_proj="gated-gelu")
    assert_packed_rows_match(models.build_encoder("umt5", hf_config, rngs=nnx.Rngs(0)))
