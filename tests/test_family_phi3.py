"""Phi-3 (``phi3``: Phi-3, Phi-3.5, Phi-4, Phi-4-mini), the Llama architecture with fused
``qkv_proj`` / ``gate_up_proj`` tensors, against transformers 5's Phi3* models: every hidden state
(right and left padding) with grouped-query attention and the sliding window, and with partial
rotary dimensions and LongRoPE (its short factors below the original length, its long ones past
it); the fused tensors joined back bit for bit; causal-LM logits; task exports; a PEFT adapter on
the fused module; packed rows; residual dropout; config errors.

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

from test_export import NLI, TAGS, build, task  # noqa: E402
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

from jaxtl import models  # noqa: E402
from jaxtl.models import hf, llama  # noqa: E402

TOL = 1e-5
# Phi-3-mini's layout in miniature: grouped-query attention (Phi-3-medium's), a window (3)
# shorter than the test rows (7 tokens).
MINI = dict(TINY, pad_token_id=0, sliding_window=3)
# Phi-4-mini's: half the head dimensions rotated (of 8), LongRoPE with an original length of 4,
# so the 7-token rows take the long factors and a 3-token batch the short ones.
LONGROPE = dict(
    TINY,
    pad_token_id=0,
    max_position_embeddings=16,
    original_max_position_embeddings=4,
    rope_parameters={
        "rope_type": "longrope",
        "rope_theta": 10000.0,
        "partial_rotary_factor": 0.5,
        "short_factor": [1.0, 1.5],
        "long_factor": [3.0, 7.0],
        "original_max_position_embeddings": 4,
    },
)
CONFIGS = {"mini": MINI, "longrope": LONGROPE}


def save_hf(cls_suffix: str, config: dict, path, seed: int = 0, **edit):
    torch.manual_seed(seed)
    cls = getattr(transformers, "Phi3" + cls_suffix)
    model = jitter(cls(transformers.Phi3Config(**config, **edit))).eval()
    model.save_pretrained(path)
    return model


@pytest.mark.parametrize("variant", sorted(CONFIGS))
def test_every_hidden_state_matches_phi3model_with_right_and_left_padding(tmp_path, variant):
    ref = save_hf("Model", CONFIGS[variant], tmp_path)
    enc = models.from_pretrained(tmp_path).model
    assert enc.family == "phi3" and enc.causal and enc.cfg.kv_heads == 2
    for left in (False, True):
        ids, mask = padded(left=left)
        assert_close(ours(enc, ids, mask), hf_states(ref, ids, mask, left), mask)
    short_ids, short_mask = padded()
    short_ids, short_mask = short_ids[:, :3], short_mask[:, :3]
    assert_close(ours(enc, short_ids, short_mask), hf_states(ref, short_ids, short_mask, False),
                 short_mask)  # fmt: skip


def test_longrope_uses_its_long_factors_past_the_original_length(tmp_path):
    """The LongRoPE model's 7-token rows depend on which factors rotate them: with the short
    ones everywhere they would differ (so the parity above checks the switch), and its cos and
    sin carry transformers' attention factor sqrt(1 + ln(16/4) / ln 4)."""
    save_hf("Model", LONGROPE, tmp_path)
    enc = models.from_pretrained(tmp_path).model
    cfg = enc.cfg
    assert cfg.rotary_dim == 4 and cfg.rope_attention_factor == pytest.approx(np.sqrt(2.0))
    short = llama.LlamaConfig(**{**vars(cfg), "rope_long_factor": cfg.rope_short_factor})
    pos = jnp.arange(7)[None]
    a, b = llama.rotary(cfg, pos, jnp.float32)[0], llama.rotary(short, pos, jnp.float32)[0]
    assert np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-2
    c, d = (
        llama.rotary(cfg, pos[:, :4], jnp.float32)[0],
        llama.rotary(short, pos[:, :4], jnp.float32)[0],
    )
    np.testing.assert_array_equal(np.asarray(c), np.asarray(d))  # 4 positions: the short factors


def test_export_joins_the_fused_tensors_bit_for_bit(tmp_path):
    save_hf("Model", LONGROPE, tmp_path / "in")
    pre = models.from_pretrained(tmp_path / "in")
    out = models.save_pretrained(pre.model, tmp_path / "out", hf_config=pre.hf_config)
    before, after = hf.read_tensors(tmp_path / "in"), hf.read_tensors(out)
    assert set(after) == set(before)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert "layers.0.self_attn.qkv_proj.weight" in after
    again = transformers.AutoModel.from_pretrained(str(out)).eval()
    assert type(again).__name__ == "Phi3Model"
    assert again.config.rope_parameters["rope_type"] == "longrope"
    ids, mask = padded()
    assert_close(ours(pre.model, ids, mask), hf_states(again, ids, mask, False), mask)
    # and the config reads back as the same config
    fam = models.FAMILIES["phi3"]
    written = json.loads((out / "config.json").read_text())
    assert fam.config_from_hf(written) == pre.model.cfg


@pytest.mark.parametrize("tied", [False, True])
def test_causal_lm_logits_match_phi3forcausallm(tmp_path, tied):
    ref = save_hf("ForCausalLM", MINI, tmp_path, tie_word_embeddings=tied)  # Phi-4-mini ties
    model = models.from_pretrained(tmp_path, load_lm_head=True).model
    ids, mask = padded()
    _, feats = model.features(jnp.asarray(ids), jnp.asarray(mask))
    logits = np.asarray(model.heads["lm"](feats, model.encoder.tied_embedding()))
    with torch.no_grad():
        theirs = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits
    real = mask.astype(bool)
    assert np.abs(logits[real] - theirs.numpy()[real]).max() <= TOL
    out = models.save_pretrained(model, tmp_path / "export")
    assert json.loads((out / "config.json").read_text())["architectures"] == ["Phi3ForCausalLM"]


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("phi3")
    save_hf("Model", MINI, path)
    return path


@pytest.mark.parametrize("kind", ["classification", "tagging"])
def test_task_model_export_reloads_in_transformers(base_dir, tmp_path, kind):
    td = task(kind, NLI if kind == "classification" else TAGS)
    model, _, hf_config = build(base_dir, [td])
    export_matches_transformers(model, td, tmp_path / "out", "Phi3", hf_config)


def test_a_qa_head_exports_in_jaxtls_format(base_dir, tmp_path):
    """transformers has no Phi3ForQuestionAnswering: the qa head is exported in jaxtl's format,
    and the report says why."""
    from jaxtl import export

    td = task("qa")
    model, _, hf_config = build(base_dir, [td])
    rep = export.export_task_model(model, None, td, tmp_path / "out", hf_config=hf_config)
    assert rep["format"] == "jaxtl" and "no transformers head for qa" in rep["reason"], rep


@pytest.mark.parametrize("kind", ["classification", "tagging"])
def test_a_lora_adapter_on_qkv_proj_loads_in_peft(base_dir, tmp_path, kind):
    """LoRA on the query, key, value and output: PEFT gets one factor pair on ``qkv_proj`` (rank
    3r) beside ``o_proj``'s (rank r), and reproduces jaxtl's logits over the base checkpoint."""
    assert_peft_adapter_matches(base_dir, tmp_path / "adapter", f"Phi3For{ARCH[kind]}", kind)
    written = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert {"self_attn.qkv_proj", "self_attn.o_proj"} <= set(written["target_modules"]), written
    assert (written["r"], set(written["rank_pattern"].values())) == (4, {12}), written


ARCH = {"classification": "SequenceClassification", "tagging": "TokenClassification"}


def test_packed_rows_give_each_example_its_unpacked_logits():
    """Partial rotary dimensions and the window inside packed segments."""
    config = dict(LONGROPE, vocab_size=30522, sliding_window=4, max_position_embeddings=64,
                  original_max_position_embeddings=64,
                  rope_parameters=dict(LONGROPE["rope_parameters"],
                                       original_max_position_embeddings=64))  # fmt: skip
    encoder = models.build_encoder("phi3", config, rngs=nnx.Rngs(0))
    assert encoder.cfg.rotary_dim == 4 and encoder.cfg.sliding_window == 4
    assert_packed_rows_match(encoder)


def test_residual_dropout_applies_in_training_only(tmp_path):
    save_hf("Model", MINI, tmp_path, resid_pdrop=0.5)
    enc = models.from_pretrained(tmp_path).model
    assert enc.cfg.residual_dropout == 0.5
    ids, mask = jnp.asarray(padded()[0]), jnp.asarray(padded()[1])
    a = enc(ids, mask).last_hidden_state
    b = enc(ids, mask, deterministic=False, rngs=nnx.Rngs(dropout=1)).last_hidden_state
    assert np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-2


@pytest.mark.parametrize(
    "model_type,edit,message",
    [
        ("phi3", {"rope_parameters": dict(LONGROPE["rope_parameters"], short_factor=[1.0])},
         r"longrope's short_factor must list 2 factors"),
        ("phi3", {"rope_parameters": {"rope_type": "dynamic", "factor": 2.0}},
         r"rope_parameters.rope_type='dynamic'"),
        ("phi3", {"rope_parameters": {"rope_type": "longrope", "long_factor": [1, 1]}},
         r"lacks \['short_factor'"),
        ("llama", {"partial_rotary_factor": 0.5},
         r"partial_rotary_factor=0.5 \(supported: 1.0\); transformers' llama rotates every"),
        ("llama", {"rope_parameters": {"rope_type": "longrope"}}, r"rope_type='longrope'"),
    ],
)  # fmt: skip
def test_config_errors_name_the_attribute(model_type, edit, message):
    config = {**TINY, **({} if model_type == "llama" else {"original_max_position_embeddings": 4}),
              **edit}  # fmt: skip
    with pytest.raises(ValueError, match=message) as e:
        models.build_encoder(model_type, config, rngs=nnx.Rngs(0))
    assert "\n" not in str(e.value)


def phi3_dir(path):
    """A tiny Phi-3 (LongRoPE, partial rotary) with a byte-level BPE tokenizer, for command-line
    runs."""
    from test_family_llama import byte_level_tokenizer

    tok = byte_level_tokenizer()
    config = dict(LONGROPE, vocab_size=len(tok), max_position_embeddings=128,
                  original_max_position_embeddings=64,
                  rope_parameters=dict(LONGROPE["rope_parameters"],
                                       original_max_position_embeddings=64))  # fmt: skip
    enc = models.build_encoder("phi3", config, rngs=nnx.Rngs(0))
    models.save_pretrained(enc, path, tokenizer=tok, hf_config=config)
    return path
