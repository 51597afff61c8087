"""Gemma, Gemma 2 and Gemma 3 (text), the Llama architecture with Gemma's differences, against
transformers: every hidden state (right and left padding), causal-LM logits, the task models'
export under their own class names, a PEFT adapter, packed rows, and the config attributes that
tell them apart — (1 + w) norms and scaled embeddings (all three), the sandwich norms,
``query_pre_attn_scalar`` and per-layer sliding windows (Gemma 2/3), the capped attention scores
and logits (Gemma 2), the per-head query/key norms and the sliding layers' own RoPE base
(Gemma 3).

Tolerance: 1e-5 max abs difference (fp32) on real-token positions, as tests/test_family_llama.py.
"""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch", reason="transformers (torch) is the reference")
transformers = pytest.importorskip("transformers")

from test_export import NLI, TAGS, build, perturbed, task  # noqa: E402
from test_family_llama import (  # noqa: E402
    TINY,
    assert_close,
    export_matches_transformers,
    hf_states,
    ours,
    padded,
)
from test_family_llama_variants import (  # noqa: E402
    assert_packed_rows_match,
    assert_peft_adapter_matches,
)
from test_hf_parity import jitter  # noqa: E402

from jaxtl import export, models  # noqa: E402

TOL = 1e-5
# Three layers, so that sliding and full layers alternate; the window (3) is shorter than the
# test rows (7 tokens); the caps are small enough to change the scores and logits; Gemma 3's
# two RoPE bases differ, and its full layers' RoPE is linearly scaled.
GEMMA2 = dict(TINY, num_hidden_layers=3, head_dim=16, sliding_window=3, query_pre_attn_scalar=12,
              attn_logit_softcapping=2.0, final_logit_softcapping=0.5)  # fmt: skip
GEMMA3 = dict(TINY, num_hidden_layers=3, head_dim=16, sliding_window=3, query_pre_attn_scalar=12,
              sliding_window_pattern=2, rope_theta=1000.0, rope_local_base_freq=50.0,
              rope_scaling={"rope_type": "linear", "factor": 4.0})  # fmt: skip
CONFIGS = {
    "gemma": (transformers.GemmaConfig, dict(TINY, head_dim=16)),
    "gemma2": (transformers.Gemma2Config, GEMMA2),
    "gemma3_text": (transformers.Gemma3TextConfig, GEMMA3),
}
NAMES = {"gemma": "Gemma", "gemma2": "Gemma2", "gemma3_text": "Gemma3Text"}
LM = {"gemma": "GemmaForCausalLM", "gemma2": "Gemma2ForCausalLM",
      "gemma3_text": "Gemma3ForCausalLM"}  # fmt: skip


def save_hf(model_type: str, cls_name: str, path, seed: int = 0, **edit):
    config_cls, hf_config = CONFIGS[model_type]
    torch.manual_seed(seed)
    model = jitter(getattr(transformers, cls_name)(config_cls(**{**hf_config, **edit}))).eval()
    model.save_pretrained(path)
    return model


@pytest.mark.parametrize("model_type", sorted(CONFIGS))
def test_every_hidden_state_matches_transformers_with_right_and_left_padding(tmp_path, model_type):
    ref = save_hf(model_type, NAMES[model_type] + "Model", tmp_path)
    enc = models.from_pretrained(tmp_path).model
    cfg = enc.cfg
    assert enc.family == model_type and enc.causal
    assert cfg.norm_offset and cfg.embedding_scale and cfg.activation == "gelu_pytorch_tanh"
    layer = enc.layers[0]
    if model_type == "gemma":
        assert not cfg.sandwich_norms and cfg.layer_types is None and cfg.sliding_window is None
    else:  # the norms around the attention's and the MLP's outputs, sliding layers 0 and 2
        assert layer.attention_output_norm.scale[...].shape == (32,)
        assert cfg.layer_types == ("sliding_attention", "full_attention", "sliding_attention")
        assert cfg.query_pre_attn_scalar == 12 and cfg.sliding_window == 3
    if model_type == "gemma2":
        assert (cfg.attention_softcap, cfg.final_logit_softcap) == (2.0, 0.5)
    if model_type == "gemma3_text":
        assert layer.attention.query_norm.scale[...].shape == (16,)
        assert (cfg.rope_theta, cfg.rope_type, cfg.rope_factor) == (1000.0, "linear", 4.0)
        assert cfg.local_rope_theta == 50.0
    for left in (False, True):
        ids, mask = padded(left=left)
        assert_close(ours(enc, ids, mask), hf_states(ref, ids, mask, left), mask, n=cfg.num_layers)
    # It saves as its own model type, which transformers loads with the same states.
    out = models.save_pretrained(enc, tmp_path / "export")
    written = json.loads((out / "config.json").read_text())
    assert written["model_type"] == model_type
    assert written["architectures"] == [f"{NAMES[model_type]}Model"]
    again = transformers.AutoModel.from_pretrained(str(out)).eval()
    assert type(again).__name__ == f"{NAMES[model_type]}Model"
    ids, mask = padded()
    assert_close(ours(enc, ids, mask), hf_states(again, ids, mask, False), mask, n=cfg.num_layers)


@pytest.mark.parametrize("model_type", sorted(CONFIGS))
def test_causal_lm_logits_match_transformers(tmp_path, model_type):
    ref = save_hf(model_type, LM[model_type], tmp_path)
    model = models.from_pretrained(tmp_path, load_lm_head=True).model
    ids, mask = padded()
    _, feats = model.features(jnp.asarray(ids), jnp.asarray(mask))
    emb = model.encoder.tied_embedding()
    logits = np.asarray(model.heads["lm"](feats, emb))
    with torch.no_grad():
        theirs = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits
    real = mask.astype(bool)
    assert np.abs(logits[real] - theirs.numpy()[real]).max() <= TOL
    if model_type == "gemma2":  # the cap (0.5) bounds the logits, which it changes
        raw = np.asarray(feats @ emb.T)
        assert np.abs(logits).max() < 0.5 < np.abs(raw).max()
    out = models.save_pretrained(model, tmp_path / "export")
    assert json.loads((out / "config.json").read_text())["architectures"] == [LM[model_type]]


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def base(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    save_hf(request.param, NAMES[request.param] + "Model", path)
    return request.param, path


@pytest.mark.parametrize("kind", ["classification", "tagging", "qa"])
def test_task_model_export_reloads_in_transformers(base, tmp_path, kind):
    """Each head transformers has exports as the model type's own class with jaxtl's logits
    (Gemma 3's text classifier is ``Gemma3TextForSequenceClassification``); one it lacks
    (question answering, and Gemma 3's token classifier) is written in jaxtl's format, saying
    why."""
    model_type, base_dir = base
    td = task(kind, NLI if kind == "classification" else TAGS if kind == "tagging" else ())
    model, _, hf_config = build(base_dir, [td])
    if kind == "qa" or (kind == "tagging" and model_type == "gemma3_text"):
        rep = export.export_task_model(model, perturbed(model), td, tmp_path / "out",
                                       hf_config=hf_config)  # fmt: skip
        assert rep["format"] == "jaxtl"
        assert f"model_type {model_type!r} has no transformers head for {kind}" in rep["reason"]
        return
    export_matches_transformers(model, td, tmp_path / "out", NAMES[model_type], hf_config)


def test_a_gemma2_lora_adapter_loads_in_peft_with_the_merged_logits(tmp_path):
    save_hf("gemma2", "Gemma2Model", tmp_path / "base")
    assert_peft_adapter_matches(tmp_path / "base", tmp_path / "adapter",
                                "Gemma2ForSequenceClassification")  # fmt: skip


def test_packed_rows_keep_gemma3s_windows_and_bases_within_each_example():
    """Packed rows (segment mask, positions restarting per example) give each example the
    logits it gets alone, with sliding layers whose window is shorter than the examples and
    whose RoPE base differs from the full layers'."""
    hf_config = dict(GEMMA3, vocab_size=30522, sliding_window=4)
    encoder = models.build_encoder("gemma3_text", hf_config, rngs=nnx.Rngs(0))
    assert encoder.cfg.sliding(0) and not encoder.cfg.sliding(1)
    assert_packed_rows_match(encoder)


def test_gemma3s_older_config_layout_reads_as_transformers_5s():
    """Released Gemma 3 configs say ``rope_theta``, ``rope_local_base_freq``, ``rope_scaling``
    and ``sliding_window_pattern``; transformers 5 writes ``rope_parameters`` per layer type
    and ``layer_types``. Both give one config, which writes back and reads again unchanged."""
    fam = models.FAMILIES["gemma3_text"]
    legacy = fam.config_from_hf(dict(GEMMA3, model_type="gemma3_text"))
    written = transformers.Gemma3TextConfig(**GEMMA3).to_dict()
    assert "rope_local_base_freq" not in written and "layer_types" in written
    assert fam.config_from_hf(written) == legacy
    assert fam.config_from_hf({**written, **fam.config_to_hf(legacy)}) == legacy
    # Unsaid, the bases are Gemma 3's own: 1e6 for full layers, 1e4 for sliding ones.
    plain = {k: v for k, v in GEMMA3.items() if not k.startswith("rope")}
    cfg = fam.config_from_hf(plain)
    assert (cfg.rope_theta, cfg.local_rope_theta, cfg.rope_type) == (1e6, 1e4, "default")


def test_a_saved_config_reads_back_as_the_same_config():
    for model_type, (_, hf_config) in CONFIGS.items():
        fam = models.FAMILIES[model_type]
        cfg = fam.config_from_hf(hf_config)
        assert cfg.model_type == model_type
        out = fam.config_to_hf(cfg)
        assert out["model_type"] == model_type and "mlp_bias" not in out
        assert ("hidden_act" in out) == (model_type == "gemma"), model_type  # its config's key
        assert fam.config_from_hf({**hf_config, **out}) == cfg


def test_gemmas_legacy_gelu_is_the_tanh_approximation():
    """The released Gemma configs say ``hidden_act="gelu"`` and mean the tanh approximation, as
    transformers reads them."""
    cfg = models.FAMILIES["gemma"].config_from_hf(dict(TINY, hidden_act="gelu"))
    assert cfg.activation == "gelu_pytorch_tanh"
    assert transformers.GemmaConfig(**TINY, hidden_act="gelu").hidden_act == "gelu_pytorch_tanh"


@pytest.mark.parametrize(
    "model_type,edit,message",
    [
        ("gemma2", {"use_bidirectional_attention": True},
         "unsupported config attribute use_bidirectional_attention=True for 'gemma2'"),
        ("gemma2", {"layer_types": ["full_attention"]},
         r"layer_types=\['full_attention'\]: expected 2 values"),
        ("gemma2", {"layer_types": ["full_attention", "chunked_attention"]},
         "each one of"),
        ("gemma3_text", {"rope_parameters": {"full_attention": {"rope_type": "default"},
                                             "sliding_attention": {"rope_type": "linear"}}},
         "rope_parameters.sliding_attention.rope_type='linear'"),
        ("gemma", {"hidden_act": "mish"}, "unsupported config attribute hidden_act='mish'"),
    ],
)  # fmt: skip
def test_config_errors_name_the_attribute(model_type, edit, message):
    with pytest.raises(ValueError, match=message):
        models.build_encoder(model_type, {**TINY, **edit}, rngs=nnx.Rngs(0))


def gemma_dir(model_type: str, path):
    """A tiny model of ``model_type`` with a byte-level BPE tokenizer for command-line runs."""
    from test_family_llama import byte_level_tokenizer

    tok = byte_level_tokenizer()
    hf_config = dict(CONFIGS[model_type][1], vocab_size=len(tok), max_position_embeddings=128)
    enc = models.build_encoder(model_type, hf_config, rngs=nnx.Rngs(0))
    models.save_pretrained(enc, path, tokenizer=tok, hf_config=hf_config)
    return path


def save_multimodal(path, *, sparse: bool = False):
    """A tiny Gemma3ForConditionalGeneration (Gemma 3 4B and up: a vision tower and projector
    beside the text model); ``sparse``: its text_config names only what differs from
    transformers' defaults, as the released configs do."""
    # transformers' own head counts, which a sparse config leaves out (no rope_scaling: the
    # multimodal config fixes its own)
    text = {k: v for k, v in GEMMA3.items() if k != "rope_scaling"}
    text.update(num_attention_heads=8, num_key_value_heads=4)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=2, image_size=28, patch_size=14)  # fmt: skip
    torch.manual_seed(0)
    config = transformers.Gemma3Config(text_config=text, vision_config=vision,
                                       mm_tokens_per_image=4)  # fmt: skip
    ref = jitter(transformers.Gemma3ForConditionalGeneration(config)).eval()
    ref.save_pretrained(path)
    if sparse:
        written = json.loads((path / "config.json").read_text())
        defaults = transformers.Gemma3TextConfig().to_dict()
        written["text_config"] = {k: v for k, v in written["text_config"].items()
                                  if v != defaults.get(k)}  # fmt: skip
        assert not {"num_attention_heads", "num_key_value_heads", "rms_norm_eps"} & set(
            written["text_config"]
        )
        (path / "config.json").write_text(json.dumps(written))
    return ref


@pytest.mark.parametrize("layout", ["as_saved", "sparse_config", "model_language_model"])
def test_a_multimodal_gemma3_checkpoint_loads_as_its_text_model(tmp_path, layout):
    """Gemma 3 from 4B up is ``Gemma3ForConditionalGeneration``: jaxtl reads its text_config
    (transformers' defaults filled in) and the text model's tensors, whether under
    ``language_model.model.`` (as saved) or ``model.language_model.``, and leaves the vision
    tower; the states are the multimodal model's own text model's."""
    ref = save_multimodal(tmp_path, sparse=layout == "sparse_config")
    if layout == "model_language_model":
        from safetensors.numpy import load_file, save_file

        file = tmp_path / "model.safetensors"
        tensors = load_file(str(file))
        renamed = {"model." + k.replace("language_model.model.", "language_model.", 1): v
                   for k, v in tensors.items()}  # fmt: skip
        assert any(k.startswith("model.vision_tower.") for k in renamed)
        save_file(renamed, str(file), metadata={"format": "pt"})
    enc = models.from_pretrained(tmp_path).model
    cfg = enc.cfg
    assert enc.family == "gemma3_text" and (cfg.num_heads, cfg.kv_heads, cfg.head_dim) == (8, 4, 16)
    text_model = ref.model.language_model
    for left in (False, True):
        ids, mask = padded(left=left)
        assert_close(ours(enc, ids, mask), hf_states(text_model, ids, mask, left), mask, n=3)


def test_a_classifier_from_a_multimodal_gemma3_exports_as_a_text_classifier(tmp_path):
    save_multimodal(tmp_path / "base")
    td = task("classification", NLI)
    model, _, hf_config = build(tmp_path / "base", [td])
    assert hf_config["model_type"] == "gemma3_text" and "vision_config" not in hf_config
    export_matches_transformers(model, td, tmp_path / "out", "Gemma3Text", hf_config)


def test_a_multimodal_gemma3_config_without_a_text_config_is_named(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma3"}))
    with pytest.raises(ValueError, match=r"config.json: a 'gemma3' config needs a text_config"):
        models.from_pretrained(tmp_path)
    # one transformers refuses (its strict types: an int here) is named as one line too
    bad = {"model_type": "gemma3", "text_config": {"query_pre_attn_scalar": 256.5}}
    (tmp_path / "config.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"config.json: the text_config of this 'gemma3' "
                                         r"checkpoint could not be read as a 'gemma3_text'"):  # fmt: skip
        models.from_pretrained(tmp_path)


def test_embeddinggemmas_bidirectional_attention_matches_transformers(tmp_path):
    """EmbeddingGemma is Gemma 3 with ``use_bidirectional_attention``: no causal mask, and a
    sliding layer's token sees ``sliding_window // 2`` positions either side (here 2 of a
    7-token row, so the window changes the states)."""
    ref = save_hf("gemma3_text", "Gemma3TextModel", tmp_path, use_bidirectional_attention=True,
                  sliding_window=4)  # fmt: skip
    enc = models.from_pretrained(tmp_path).model
    assert not enc.causal and enc.cfg.bidirectional and enc.cfg.sliding_window == 4
    for left in (False, True):
        ids, mask = padded(left=left)
        assert_close(ours(enc, ids, mask), hf_states(ref, ids, mask, left), mask, n=3)
    wide = models.build_encoder("gemma3_text", {**json.loads((tmp_path / "config.json")
                                                             .read_text()), "sliding_window": 64},
                                rngs=nnx.Rngs(0))  # fmt: skip
    nnx.update(wide, nnx.state(enc))
    ids, mask = padded()
    assert np.abs(ours(wide, ids, mask)[-1] - ours(enc, ids, mask)[-1])[0].max() > 1e-4
    out = models.save_pretrained(enc, tmp_path / "export")
    again = transformers.AutoModel.from_pretrained(str(out)).eval()
    assert again.config.use_bidirectional_attention
    assert_close(ours(enc, ids, mask), hf_states(again, ids, mask, False), mask, n=3)


def test_an_embeddinggemma_folder_gives_sentence_transformers_vectors(tmp_path):
    """EmbeddingGemma's sentence-transformers folder: the bidirectional Gemma 3, mean pooling,
    two Dense projections without bias, Normalize — ``jaxtl --embed`` gives ``encode()``'s
    vectors."""
    st = pytest.importorskip("sentence_transformers")
    from test_embed import SENTENCES, st_folder, st_modules
    from test_family_llama import byte_level_tokenizer

    from jaxtl import embed

    tok = byte_level_tokenizer()
    tok.pad_token = "</s>"
    base = tmp_path / "base"
    save_hf("gemma3_text", "Gemma3TextModel", base, use_bidirectional_attention=True,
            vocab_size=len(tok), max_position_embeddings=256)  # fmt: skip
    tok.save_pretrained(base)
    _, _, Dense, _ = st_modules()
    torch.manual_seed(1)
    identity = torch.nn.Identity()
    folder = st_folder(tmp_path / "st", base, [
        Dense(32, 64, bias=False, activation_function=identity),
        Dense(64, 32, bias=False, activation_function=identity),
    ])  # fmt: skip
    e = embed.embedder(folder)
    assert (e.pooling, e.normalize, len(e.dense)) == ("mean", True, 2)
    ref = st.SentenceTransformer(folder, device="cpu").encode(SENTENCES[:4])
    np.testing.assert_allclose(e.embed(SENTENCES[:4]), ref, atol=TOL, rtol=0)
