"""Qwen2, Qwen3, Mistral, Ministral, SmolLM3 and OLMo 2, the Llama architecture under six more
model types, against transformers: every hidden state (right and left padding), causal-LM logits, the
task models' export under their own class names, a PEFT adapter, packed rows, and the config
attributes that tell them apart — Qwen2's query/key/value biases without an output bias, Qwen3's
per-head query and key norms, Mistral's sliding window, Ministral's window on the layers
``layer_types`` names, SmolLM3's layers without rotary positions (NoPE), OLMo 2's norms on the
sublayers' outputs only and its query/key norms over all heads.

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

from test_export import NLI, TAGS, build, jaxtl_logits, max_diff, perturbed, task  # noqa: E402
from test_family_llama import (  # noqa: E402
    TINY,
    _hf_out,
    assert_close,
    export_matches_transformers,
    hf_states,
    ours,
    padded,
)
from test_hf_parity import jitter  # noqa: E402

from jaxtl import assembly, export, models  # noqa: E402
from jaxtl import config as config_lib  # noqa: E402

TOL = 1e-5
# The window (3) is shorter than the test rows (7 tokens), so it changes most positions.
CONFIGS = {
    "qwen2": (transformers.Qwen2Config, dict(TINY)),
    # Qwen3 with the optional biases too (on all four projections, as Llama's)
    "qwen3": (transformers.Qwen3Config, dict(TINY, head_dim=16, attention_bias=True)),
    "mistral": (transformers.MistralConfig, dict(TINY, head_dim=8, sliding_window=3)),
    # the window on the first layer only
    "ministral": (transformers.MinistralConfig,
                  dict(TINY, pad_token_id=0, head_dim=8, sliding_window=3,
                       layer_types=["sliding_attention", "full_attention"])),
    # the second layer without rotary positions, the MLP's biases on
    "smollm3": (transformers.SmolLM3Config,
                dict(TINY, pad_token_id=0, no_rope_layers=[1, 0], mlp_bias=True)),
    "olmo2": (transformers.Olmo2Config, dict(TINY, pad_token_id=0)),
}  # fmt: skip
NAMES = {"qwen2": "Qwen2", "qwen3": "Qwen3", "mistral": "Mistral", "ministral": "Ministral",
         "smollm3": "SmolLM3", "olmo2": "Olmo2"}  # fmt: skip


def save_hf(model_type: str, cls_suffix: str, path, seed: int = 0, **edit):
    config_cls, hf_config = CONFIGS[model_type]
    cls = getattr(transformers, NAMES[model_type] + cls_suffix)
    torch.manual_seed(seed)
    model = jitter(cls(config_cls(**hf_config, **edit))).eval()
    model.save_pretrained(path)
    return model


@pytest.mark.parametrize("model_type", sorted(CONFIGS))
def test_every_hidden_state_matches_transformers_with_right_and_left_padding(tmp_path, model_type):
    ref = save_hf(model_type, "Model", tmp_path)
    enc = models.from_pretrained(tmp_path).model
    assert enc.family == model_type and enc.causal
    attention = enc.layers[0].attention
    if model_type == "qwen2":  # biases on q, k, v; none on the output projection
        assert attention.query.bias is not None and attention.value.bias is not None
        assert attention.output.bias is None
    elif model_type == "qwen3":  # a norm over each head's query and key (jittered: not 1s)
        assert attention.query_norm.scale[...].shape == (16,) and attention.output.bias is not None
    elif model_type == "smollm3":
        assert enc.cfg.rope_layers == (True, False) and enc.layers[0].mlp.gate.bias is not None
    elif model_type == "olmo2":  # output norms only; query/key norms as wide as the projections
        layer = enc.layers[0]
        assert layer.attention_norm is None and layer.mlp_output_norm is not None
        assert attention.query_norm.scale[...].shape == (32,)
        assert attention.key_norm.scale[...].shape == (16,)
    elif model_type == "ministral":
        assert enc.cfg.sliding(0) and not enc.cfg.sliding(1)
    else:
        assert enc.cfg.sliding_window == 3 and attention.query.bias is None
    for left in (False, True):
        ids, mask = padded(left=left)
        assert_close(ours(enc, ids, mask), hf_states(ref, ids, mask, left), mask)
    # It saves as its own model type, which transformers loads with the same states.
    # SmolLM3Config's default pad id (128004) is past this tiny vocabulary: given the loaded
    # config (as a run does), the export keeps the checkpoint's.
    keep = {"pad_token_id": 0} if model_type == "smollm3" else None
    out = models.save_pretrained(enc, tmp_path / "export", hf_config=keep)
    written = json.loads((out / "config.json").read_text())
    assert written["model_type"] == model_type
    assert written["architectures"] == [f"{NAMES[model_type]}Model"]
    again = transformers.AutoModel.from_pretrained(str(out)).eval()
    assert type(again).__name__ == f"{NAMES[model_type]}Model"
    ids, mask = padded()
    assert_close(ours(enc, ids, mask), hf_states(again, ids, mask, False), mask)


def test_smollm3s_nope_layer_has_no_rotary_positions(tmp_path):
    """The same SmolLM3 weights with every layer rotating differ from the released layout after
    the NoPE layer, and only there (so the parity above checks it)."""
    save_hf("smollm3", "Model", tmp_path)
    nope = models.from_pretrained(tmp_path).model
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(dict(config, no_rope_layers=[1, 1])))
    rotating = models.from_pretrained(tmp_path).model
    ids, mask = padded()
    a, b = ours(nope, ids, mask), ours(rotating, ids, mask)
    np.testing.assert_array_equal(a[1], b[1])
    assert np.abs(a[2][0] - b[2][0]).max() > 1e-3


def test_the_sliding_window_changes_what_a_token_sees(tmp_path):
    """The same Mistral weights with a window of 3 and with none: equal for the tokens that have
    at most 3 before them, different after (so the parity above checks the window)."""
    save_hf("mistral", "Model", tmp_path)
    windowed = models.from_pretrained(tmp_path).model
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(dict(config, sliding_window=None)))
    full = models.from_pretrained(tmp_path).model
    assert full.cfg.sliding_window is None
    ids, mask = padded()
    a, b = ours(windowed, ids, mask)[-1], ours(full, ids, mask)[-1]
    np.testing.assert_allclose(a[0, :3], b[0, :3], atol=TOL)
    assert np.abs(a[0, 3:] - b[0, 3:]).min() > 1e-4


@pytest.mark.parametrize("model_type", sorted(CONFIGS))
def test_causal_lm_logits_match_transformers(tmp_path, model_type):
    ref = save_hf(model_type, "ForCausalLM", tmp_path, tie_word_embeddings=True)  # Qwen2.5 ties
    model = models.from_pretrained(tmp_path, load_lm_head=True).model
    ids, mask = padded()
    _, feats = model.features(jnp.asarray(ids), jnp.asarray(mask))
    logits = np.asarray(model.heads["lm"](feats, model.encoder.tied_embedding()))
    with torch.no_grad():
        theirs = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits
    real = mask.astype(bool)
    assert np.abs(logits[real] - theirs.numpy()[real]).max() <= TOL
    out = models.save_pretrained(model, tmp_path / "export")
    assert json.loads((out / "config.json").read_text())["architectures"] == [
        f"{NAMES[model_type]}ForCausalLM"
    ]


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def base(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    save_hf(request.param, "Model", path)
    return request.param, path


@pytest.mark.parametrize("kind", ["classification", "tagging", "qa"])
def test_task_model_export_reloads_in_transformers(base, tmp_path, kind):
    """Each head exports as the model type's own transformers class with jaxtl's logits;
    Qwen2ForQuestionAnswering keeps its base model under ``transformer.``, Mistral's under
    ``model.``."""
    model_type, base_dir = base
    td = task(kind, NLI if kind == "classification" else TAGS if kind == "tagging" else ())
    model, _, hf_config = build(base_dir, [td])
    if model_type == "olmo2" and kind != "classification":  # transformers has no such class
        rep = export.export_task_model(model, None, td, tmp_path / "out", hf_config=hf_config)
        assert rep["format"] == "jaxtl" and f"no transformers head for {kind}" in rep["reason"]
        return
    export_matches_transformers(model, td, tmp_path / "out", NAMES[model_type], hf_config)
    if kind == "qa":
        from safetensors.numpy import load_file

        names = load_file(str(tmp_path / "out" / "model.safetensors"))
        prefix = "model." if model_type == "mistral" else "transformer."
        assert all(n.startswith((prefix, "qa_outputs.")) for n in names), sorted(names)[:3]


def test_a_qwen2_lora_adapter_loads_in_peft_with_the_merged_logits(tmp_path):
    save_hf("qwen2", "Model", tmp_path / "base")
    assert_peft_adapter_matches(tmp_path / "base", tmp_path / "adapter",
                                "Qwen2ForSequenceClassification")  # fmt: skip


def assert_peft_adapter_matches(base_dir, out, architecture: str, kind: str = "classification"):
    """A LoRA classifier (or tagger) over the checkpoint in ``base_dir`` (its LoRA and head
    perturbed), exported as a PEFT adapter to ``out``, loads over transformers'
    ``architecture`` with jaxtl's logits."""
    peft_lib = pytest.importorskip("peft")
    td = task(kind, NLI if kind == "classification" else TAGS)
    c = config_lib.base_config()
    c.optim.strategy = "lora"
    c.optim.lora_rank, c.optim.lora_alpha = 4, 8.0
    model, _, hf_config = build(base_dir, [td], c)
    params = perturbed(model, seed=4, where=lambda p: "lora_" in p or p.startswith("heads/"))
    ids, mask = padded()
    mine = jaxtl_logits(model, params, td.key, ids, mask, None)
    export.export_peft_adapter(model, params, td, out, base_hf_config=hf_config,
                               base_dir=base_dir)  # fmt: skip
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    auto = {"classification": "AutoModelForSequenceClassification",
            "tagging": "AutoModelForTokenClassification"}[kind]  # fmt: skip
    hf_base = getattr(transformers, auto).from_pretrained(
        base_dir, num_labels=td.task.num_labels, pad_token_id=0
    )
    assert type(hf_base).__name__ == architecture
    loaded = peft_lib.PeftModel.from_pretrained(hf_base, out).eval()
    args = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
    per_token = mask if kind == "tagging" else None
    assert max_diff(mine, _hf_out(loaded, kind, args), per_token) <= TOL


def test_packed_rows_of_olmo2_give_each_example_its_unpacked_logits():
    encoder = models.build_encoder("olmo2", dict(TINY, vocab_size=30522), rngs=nnx.Rngs(0))
    assert encoder.cfg.qk_norm_full and not encoder.cfg.pre_norms
    assert_packed_rows_match(encoder)


def test_packed_rows_keep_mistrals_window_within_each_example():
    """Packed rows (segment mask, positions restarting per example) give each example the
    logits it gets alone, with the sliding window shorter than the examples."""
    hf_config = dict(TINY, vocab_size=30522, sliding_window=4)
    encoder = models.build_encoder("mistral", hf_config, rngs=nnx.Rngs(0))
    assert encoder.cfg.sliding_window == 4
    assert_packed_rows_match(encoder)


def assert_packed_rows_match(encoder) -> None:
    """Twelve SST-like sentences (MiniLM's word pieces, 32 tokens at most) through a
    classifier on ``encoder``: packed rows give each its unpacked logits."""
    from conftest import minilm_dir
    from test_packing import _logits, _per_example

    from jaxtl.data import batching, get_task, packing, tokenize
    from jaxtl.models import hf

    t = get_task("builtin/sentiment")
    examples = t.load("dev")[:12]
    enc = tokenize.encode(t, examples, hf.load_tokenizer(minilm_dir()), max_length=32)
    head = assembly.make_head(t, 32, config_lib.base_config(), nnx.Rngs(1), encoder=encoder)
    model = models.TransferModel(encoder, {"t": head})
    flat = batching.eval_batches(enc, batch_size=4, buckets=(32, 64), pad_id=0)
    packed = packing.eval_batches(enc, batch_size=4, buckets=(32, 64), pad_id=0)
    assert max(int((b["example_weight"] > 0).sum(1).max()) for b in packed) >= 2
    a = _per_example(flat, [_logits(model, b) for b in flat], enc, False, (32, 64))
    b = _per_example(packed, [_logits(model, b) for b in packed], enc, False, (32, 64))
    assert sorted(a) == sorted(b) == list(range(len(examples)))
    assert max(float(np.max(np.abs(a[i] - b[i]))) for i in a) <= TOL


@pytest.mark.parametrize(
    "model_type,edit,message",
    [
        ("qwen2", {"use_sliding_window": True, "sliding_window": 4},
         "unsupported config attribute use_sliding_window=True"),
        ("qwen3", {"use_sliding_window": True, "sliding_window": 4},
         "unsupported config attribute use_sliding_window=True"),
        ("mistral", {"sliding_window": 0}, "sliding_window=0: must be >= 1"),
        ("qwen2", {"hidden_size": None}, "lacks required attribute 'hidden_size'"),
        ("smollm3", {"no_rope_layers": [1]}, r"no_rope_layers=\[1\]: expected 2 values"),
        ("ministral", {"sliding_window": 3, "layer_types": ["full_attention"]},
         r"layer_types=\['full_attention'\]: expected 2 values"),
    ],
)  # fmt: skip
def test_config_errors_name_the_attribute(model_type, edit, message):
    hf_config = {k: v for k, v in {**TINY, **edit}.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        models.build_encoder(model_type, hf_config, rngs=nnx.Rngs(0))


def test_a_saved_config_reads_back_as_the_same_config():
    for model_type, (_, hf_config) in CONFIGS.items():
        fam = models.FAMILIES[model_type]
        cfg = fam.config_from_hf(hf_config)
        assert cfg.model_type == model_type
        out = fam.config_to_hf(cfg)
        assert out["model_type"] == model_type
        assert ("attention_bias" in out) == (model_type in ("qwen3", "smollm3", "olmo2")), (
            model_type
        )
        assert fam.config_from_hf({**hf_config, **out}) == cfg


def variant_dir(model_type: str, path):
    """A tiny model of ``model_type`` with a byte-level BPE tokenizer (no pad token, as Llama 3's;
    Qwen2's names ``<|endoftext|>`` as pad, which this one lacks) for command-line runs."""
    from test_family_llama import byte_level_tokenizer

    tok = byte_level_tokenizer()
    hf_config = dict(CONFIGS[model_type][1], vocab_size=len(tok), max_position_embeddings=128)
    enc = models.build_encoder(model_type, hf_config, rngs=nnx.Rngs(0))
    models.save_pretrained(enc, path, tokenizer=tok, hf_config=hf_config)
    return path


def test_olmo2s_rmsnorm_scales_before_it_casts_as_transformers_does():
    """In bfloat16 OLMo 2's norm (weight times the float32 normalised value, then the cast)
    equals transformers' Olmo2RMSNorm bit for bit, where Llama's order (cast, then scale) does
    not."""
    from transformers.models.olmo2.modeling_olmo2 import Olmo2RMSNorm

    from jaxtl.models import llama

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 64)).astype(np.float32)
    w = rng.normal(size=(64,)).astype(np.float32)
    ref = Olmo2RMSNorm(64, eps=1e-6)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(w))
        theirs = ref(torch.tensor(x).bfloat16()).float().numpy()
    got = {}
    for olmo in (True, False):
        norm = llama.RMSNorm(64, 1e-6, dtype=jnp.bfloat16, param_dtype=jnp.float32,
                             rngs=nnx.Rngs(0), scale_float32=olmo)  # fmt: skip
        norm.scale[...] = jnp.asarray(w)
        got[olmo] = np.asarray(norm(jnp.asarray(x, jnp.bfloat16)), np.float32)
    np.testing.assert_array_equal(got[True], theirs)
    assert (got[False] != theirs).any()
