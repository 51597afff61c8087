"""ModernBERT against transformers (torch, eager attention): every hidden state on a padded batch
longer than the local window, the MLM head, task-model export and reuse, packing inputs
(``position_ids`` + ``pair_mask``), config errors, sharding names, bf16, and an in-process
multitask run (classification + tagging) sharded over 8 fake devices with a real tokenizer.

Tolerance: 1e-5 absolute, fp32 (observed ~1e-6). Tiny random models are jittered (every
parameter, biases and LayerNorm scales included, gets Gaussian noise) so that no weight is at
its initial 0 / 1 and a wrong mapping cannot hide.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch", reason="transformers (torch) is the reference")
transformers = pytest.importorskip("transformers")

from conftest import minilm_dir, small_config  # noqa: E402
from test_export import perturbed  # noqa: E402
from test_hf_parity import jitter  # noqa: E402

from jaxtl import assembly, export, mesh, models  # noqa: E402
from jaxtl import config as config_lib  # noqa: E402
from jaxtl.data.prepare import TaskData  # noqa: E402
from jaxtl.data.tasks import Task  # noqa: E402
from jaxtl.models import modernbert  # noqa: E402
from jaxtl.regimes import multitask  # noqa: E402

TOL = 1e-5
T = 24  # longer than the local window: +-4 tokens (local_attention=8)
TINY = dict(vocab_size=100, hidden_size=32, intermediate_size=48, num_hidden_layers=4,
            num_attention_heads=4, global_attn_every_n_layers=2, local_attention=8,
            max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
            cls_token_id=1, sep_token_id=2)  # fmt: skip
BIASES = dict(norm_bias=True, attention_bias=True, mlp_bias=True, classifier_bias=True)
NLI = ("entailment", "neutral", "contradiction")
TAGS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")


def hf_config(**extra):
    return transformers.ModernBertConfig(**{**TINY, **extra}, attn_implementation="eager")


def save(cls, path, seed=0, **extra):
    torch.manual_seed(seed)
    model = jitter(getattr(transformers, cls)(hf_config(**extra))).eval()
    model.save_pretrained(path)
    return model


def padded(seed: int = 0):
    """Right-padded [3, 24]: lengths 24, 15, 5 (ids 3..99, pad 0)."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((3, T), np.int64)
    mask = np.zeros((3, T), np.int64)
    for i, n in enumerate([T, 15, 5]):
        ids[i, :n] = rng.integers(3, 100, n)
        mask[i, :n] = 1
    return ids, mask


def ours(encoder, ids, mask, **kw):
    return [np.asarray(h) for h in encoder(jnp.asarray(ids), jnp.asarray(mask), **kw).hidden_states]


def theirs(model, ids, mask):
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                    output_hidden_states=True)  # fmt: skip
    return out


def max_diff(a, b, mask):
    real = mask.astype(bool)
    return float(np.abs(np.asarray(a)[real] - np.asarray(b)[real]).max())


@pytest.mark.parametrize("extra", [{}, BIASES], ids=["released", "biases"])
def test_every_hidden_state_matches_transformers(tmp_path, extra):
    ref = save("ModernBertModel", tmp_path, **extra)
    assert ref.config.layer_types == ["full_attention", "sliding_attention"] * 2
    enc = models.from_pretrained(tmp_path).model
    assert enc.family == "modernbert" and enc.cfg.layer_types == tuple(ref.config.layer_types)
    assert enc.layers[0].attention_norm is None  # HF's Identity
    ids, mask = padded()
    a, b = ours(enc, ids, mask), [h.numpy() for h in theirs(ref, ids, mask).hidden_states]
    assert len(a) == len(b) == 5
    for i, (x, y) in enumerate(zip(a, b)):
        assert max_diff(x, y, mask) <= TOL, f"hidden_states[{i}]"
    # The window is exercised: all-global attention (or another window) gives other outputs.
    for window in (1000, 6):
        wide = nnx.merge(*nnx.split(enc))
        wide.cfg = dataclasses.replace(enc.cfg, local_attention=window)
        assert max_diff(ours(wide, ids, mask)[-1], b[-1], mask) > 1e-3, window


def test_older_config_attributes(tmp_path):
    """Hub configs written before transformers 5 name the layer pattern and the two RoPE bases
    directly (global_attn_every_n_layers, global_rope_theta, local_rope_theta)."""
    old = dict(TINY, global_attn_every_n_layers=3, global_rope_theta=1000.0,
               local_rope_theta=50.0, model_type="modernbert")  # fmt: skip
    cfg = modernbert.config_from_hf(old)
    assert cfg.layer_types == ("full_attention", "sliding_attention", "sliding_attention",
                               "full_attention")  # fmt: skip
    assert (cfg.global_rope_theta, cfg.local_rope_theta) == (1000.0, 50.0)
    ref = save("ModernBertModel", tmp_path, global_attn_every_n_layers=3, global_rope_theta=1000.0,
               local_rope_theta=50.0)  # fmt: skip
    enc = models.build_encoder("modernbert", old, rngs=nnx.Rngs(0))
    state = nnx.state(models.from_pretrained(tmp_path).model)
    nnx.update(enc, state)
    ids, mask = padded(1)
    assert max_diff(ours(enc, ids, mask)[-1], theirs(ref, ids, mask).last_hidden_state, mask) <= TOL


def test_mlm_head_matches_and_exports(tmp_path):
    ref = save("ModernBertForMaskedLM", tmp_path / "hf", **BIASES)
    lm = models.from_pretrained(tmp_path / "hf", load_lm_head=True).model
    ids, mask = padded(2)
    out = lm.encoder(jnp.asarray(ids), jnp.asarray(mask))
    logits = lm.heads["lm"](out.last_hidden_state, lm.encoder.tied_embedding())
    want = theirs(ref, ids, mask).logits.numpy()
    assert max_diff(logits, want, mask) <= TOL
    # And out again: ModernBertForMaskedLM with the decoder tied to the token embeddings.
    models.save_pretrained(lm, tmp_path / "out")
    back = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "out").eval()
    assert type(back).__name__ == "ModernBertForMaskedLM"
    assert max_diff(logits, theirs(back, ids, mask).logits.numpy(), mask) <= TOL


def task(kind, labels=()):
    t = Task(f"toy/{kind}", kind, loader=None, label_names=tuple(labels))
    return TaskData(t, 0, f"toy_{kind}", 0, None, [], "dev")


@pytest.mark.parametrize(
    "kind,pooling,extra",
    [("classification", "cls", {}), ("classification", "mean", BIASES),
     ("regression", "mean", {}), ("tagging", "cls", BIASES), ("qa", "cls", {})],
)  # fmt: skip
def test_task_model_export_reloads_in_transformers(tmp_path, kind, pooling, extra):
    save("ModernBertModel", tmp_path / "base", classifier_pooling=pooling,
         classifier_activation="silu", **extra)  # fmt: skip
    td = task(kind, TAGS if kind == "tagging" else NLI if kind == "classification" else ())
    pre = models.from_pretrained(tmp_path / "base")
    model = assembly.build_model(pre.model, [td], config_lib.base_config())
    head = model.heads[td.key]
    assert head.norm is not None and head.activation == "silu"
    if kind not in ("tagging", "qa"):
        assert head.pooling == pooling
    params = perturbed(model)
    rep = export.export_task_model(model, params, td, tmp_path / "out", hf_config=pre.hf_config)
    assert rep["format"] == "transformers" and rep["reason"] is None, rep
    auto = {"tagging": transformers.AutoModelForTokenClassification,
            "qa": transformers.AutoModelForQuestionAnswering}.get(
        kind, transformers.AutoModelForSequenceClassification)  # fmt: skip
    hf = auto.from_pretrained(tmp_path / "out").eval()
    assert type(hf).__name__ == rep["architecture"]
    ids, mask = padded(3)
    m = export.with_params(model, params)
    _, feats = m.features(jnp.asarray(ids), jnp.asarray(mask))
    mine = np.asarray(m.heads[td.key](feats, jnp.asarray(mask)))
    with torch.no_grad():
        got = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
    want = (np.stack([got.start_logits.numpy(), got.end_logits.numpy()], -1) if kind == "qa"
            else got.logits.numpy())  # fmt: skip
    if kind in ("tagging", "qa"):
        assert max_diff(mine, want, mask) <= TOL
    else:
        assert float(np.abs(mine - want).max()) <= TOL
    # Loaded back into jaxtl from the transformers files, the same logits.
    back, key, info = export.load_task_model(tmp_path / "out")
    _, feats = back.features(jnp.asarray(ids), jnp.asarray(mask))
    again = np.asarray(back.heads[key](feats, jnp.asarray(mask)))
    assert info["kind"] == kind and float(np.abs(again - mine).max()) <= TOL


def test_task_checkpoint_head_is_reused(tmp_path):
    ref = save("ModernBertForSequenceClassification", tmp_path, classifier_pooling="mean",
               id2label=dict(enumerate(NLI)))  # fmt: skip
    enc = models.from_pretrained(tmp_path).model
    td = task("classification", NLI)
    model = assembly.build_model(enc, [td], config_lib.base_config())
    entry = model.init_report.to_json()["tasks"]["toy/classification"]
    assert entry["classifier"] == "reused", entry
    ids, mask = padded(4)
    _, feats = model.features(jnp.asarray(ids), jnp.asarray(mask))
    mine = np.asarray(model.heads[td.key](feats, jnp.asarray(mask)))
    with torch.no_grad():
        want = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
    assert float(np.abs(mine - want).max()) <= TOL


def test_packed_segments_see_only_themselves(tmp_path):
    """Two sequences packed in one row (positions restart, block-diagonal ``pair_mask``) give
    each sequence the hidden states it has alone: the window is intersected with the segment."""
    save("ModernBertModel", tmp_path)
    enc = models.from_pretrained(tmp_path).model
    ids, _ = padded(5)
    a, b = ids[0, :14], ids[0, 14:]  # 14 + 10 tokens: both longer than the window
    seg = np.array([1] * 14 + [2] * 10)
    pos = np.concatenate([np.arange(14), np.arange(10)])
    pair = (seg[:, None] == seg[None, :])[None, None]
    row = np.concatenate([a, b])[None]
    packed = ours(enc, row, np.ones_like(row), pair_mask=jnp.asarray(pair),
                  position_ids=jnp.asarray(pos[None]))  # fmt: skip
    alone_a = ours(enc, a[None], np.ones_like(a[None]))
    alone_b = ours(enc, b[None], np.ones_like(b[None]))
    for x, ya, yb in zip(packed, alone_a, alone_b):
        assert np.abs(x[0, :14] - ya[0]).max() <= TOL
        assert np.abs(x[0, 14:] - yb[0]).max() <= TOL


@pytest.mark.parametrize(
    "edit,message",
    [
        ({"hidden_activation": "gelu_10"}, "unsupported config attribute hidden_activation='gelu_10'"),
        ({"classifier_activation": "mish"}, "classifier_activation='mish'"),
        ({"classifier_pooling": "max"}, "unsupported config attribute classifier_pooling='max'"),
        ({"rope_parameters": {"full_attention": {"rope_type": "yarn", "rope_theta": 1.0}}},
         r"rope_parameters\['full_attention'\].rope_type='yarn'"),
        ({"rope_scaling": {"type": "linear", "factor": 2.0}}, "unsupported config attribute rope_scaling"),
        ({"layer_types": ["full_attention", "chunked_attention", "full_attention",
                          "full_attention"]}, r"layer_types=\['chunked_attention'\]"),
        ({"layer_types": ["full_attention"]}, "layer_types has 1 entries for num_hidden_layers=4"),
        ({"hidden_size": 30}, "hidden_size=30 is not divisible by num_attention_heads=4"),
        ({"head_dim": 16}, "unsupported config attribute head_dim=16"),
        ({"num_attention_heads": None}, "lacks required attribute 'num_attention_heads'"),
    ],
)  # fmt: skip
def test_config_errors_name_the_attribute(edit, message):
    cfg = {k: v for k, v in {**TINY, **edit}.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        models.build_encoder("modernbert", cfg, rngs=nnx.Rngs(0))


def test_irrelevant_attributes_are_accepted():
    """Attributes of HF's other code paths (flash attention, torch.compile, sparse MLM loss)
    change nothing jaxtl computes."""
    cfg = dict(TINY, reference_compile=True, deterministic_flash_attn=True,
               sparse_prediction=True, repad_logits_with_grad=False)  # fmt: skip
    assert models.build_encoder("modernbert", cfg, rngs=nnx.Rngs(0)).num_layers == 4


def test_logical_axes_and_bfloat16(tmp_path):
    save("ModernBertModel", tmp_path)
    enc = models.from_pretrained(tmp_path).model
    specs = mesh.logical_specs(nnx.state(enc, nnx.Param))
    assert all(specs.values()), "every parameter carries logical axis names"
    assert specs["layers/1/attention/qkv/kernel"] == ("embed", "heads")
    assert specs["layers/1/mlp/intermediate/kernel"] == ("embed", "mlp")
    assert specs["embeddings/word/embedding"] == ("vocab", "embed")
    enc16 = models.from_pretrained(tmp_path, dtype=jnp.bfloat16).model
    assert enc16.layers[1].attention.qkv.kernel[...].dtype == jnp.float32
    ids, mask = padded(6)
    out = enc16(jnp.asarray(ids), jnp.asarray(mask))
    assert all(h.dtype == jnp.bfloat16 for h in out.hidden_states)
    b = np.asarray(out.last_hidden_state, np.float32)
    assert max_diff(ours(enc, ids, mask)[-1], b, mask) < 0.1


# --- one multitask run ---------------------------------------------------------------------------


def modernbert_dir(path):
    """A tiny ModernBERT with MiniLM's (BERT WordPiece) tokenizer: vocab 30522, pad 0."""
    cfg = dict(TINY, vocab_size=30522, max_position_embeddings=512, cls_token_id=101,
               sep_token_id=102, bos_token_id=101, eos_token_id=102)  # fmt: skip
    enc = models.build_encoder("modernbert", cfg, rngs=nnx.Rngs(0))
    models.save_pretrained(enc, path, hf_config=cfg)
    src = minilm_dir()
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (src / f).exists():
            shutil.copy(src / f, path / f)
    return path


def test_multitask_smoke_fsdp(tmp_path):
    model_dir = modernbert_dir(tmp_path / "model")
    c = multitask.add_config(config_lib.base_config())
    c.tasks.names = ("builtin/sentiment", "builtin/ner")
    # FSDP over the 8 fake CPU devices (data 4 x fsdp 2): parameters and moments sharded.
    c = small_config(c, model_dir, **{"train.steps": 3, "mesh.fsdp": 2,
                                      "export_dir": str(tmp_path / "export")})  # fmt: skip
    multitask.run(c, str(tmp_path / "work"))
    results = json.loads((tmp_path / "work" / "results.json").read_text())
    assert {"builtin/sentiment", "builtin/ner"} <= set(results), results
    assert all(np.isfinite(v) for r in results.values() if isinstance(r, dict)
               for v in r.values() if isinstance(v, float))  # fmt: skip
    files = sorted((tmp_path / "export").rglob("config.json"))
    archs = {json.loads(p.read_text())["architectures"][0] for p in files}
    assert archs >= {"ModernBertForSequenceClassification", "ModernBertForTokenClassification"}, (
        files,
        sorted(p.name for p in (tmp_path / "export").rglob("*")),
    )


def test_lora_merged_export_and_peft_adapter(tmp_path):
    """LoRA on the fused ``Wqkv`` / ``Wo`` and the GeGLU ``Wi`` / ``Wo``: the merged export and a
    PEFT adapter over the base checkpoint both give jaxtl's logits in transformers."""
    peft_lib = pytest.importorskip("peft")
    base = tmp_path / "base"
    save("ModernBertModel", base, classifier_pooling="mean")
    td = task("classification", NLI)
    c = config_lib.base_config()
    c.optim.strategy = "lora"
    c.optim.lora_rank, c.optim.lora_alpha, c.optim.lora_mlp = 4, 8.0, True
    pre = models.from_pretrained(base)
    model = assembly.build_model(pre.model, [td], c)
    params = perturbed(model, where=lambda p: "lora_" in p or p.startswith("heads/"))
    ids, mask = padded(7)
    m = export.with_params(model, params)
    _, feats = m.features(jnp.asarray(ids), jnp.asarray(mask))
    mine = np.asarray(m.heads[td.key](feats, jnp.asarray(mask)))

    def logits(hf):
        with torch.no_grad():
            return hf.eval()(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits

    export.export_task_model(model, params, td, tmp_path / "merged", hf_config=pre.hf_config)
    merged = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged")
    assert float(np.abs(mine - logits(merged).numpy()).max()) <= TOL
    rep = export.export_peft_adapter(
        model, params, td, tmp_path / "adapter", base_hf_config=pre.hf_config, base_dir=base
    )
    assert rep["target_modules"] == ["attn.Wo", "attn.Wqkv", "mlp.Wi", "mlp.Wo"]
    assert rep["modules_to_save"] == ["classifier", "head"]
    hf_base = transformers.AutoModelForSequenceClassification.from_pretrained(base, num_labels=3)
    loaded = peft_lib.PeftModel.from_pretrained(hf_base, tmp_path / "adapter")
    assert float(np.abs(mine - logits(loaded).numpy()).max()) <= TOL


def test_sharded_bfloat16_checkpoint_loads(tmp_path):
    """A bf16 checkpoint in several safetensors shards (with its index) loads in float32 and
    matches transformers running the same bf16-rounded weights in float32."""
    torch.manual_seed(0)
    model = jitter(transformers.ModernBertModel(hf_config())).to(torch.bfloat16)
    model.save_pretrained(tmp_path, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    ref = transformers.ModernBertModel.from_pretrained(tmp_path, dtype=torch.float32).eval()
    enc = models.from_pretrained(tmp_path).model
    assert enc.layers[1].attention.qkv.kernel[...].dtype == jnp.float32
    ids, mask = padded(8)
    assert max_diff(ours(enc, ids, mask)[-1], theirs(ref, ids, mask).last_hidden_state, mask) <= TOL
