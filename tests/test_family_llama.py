"""The Llama-architecture decoder against transformers: every hidden state (right and left
padding, grouped-query attention, biases, head_dim != hidden/heads, llama3 RoPE scaling),
LlamaForCausalLM logits with tied and untied embeddings, the task models' export, LoRA, config
errors, and one in-process multitask run (FSDP over the 8 fake devices) with a real tokenizer.

Tolerance: 1e-5 max abs difference (fp32) on real-token positions; observed ~1e-6.
"""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch", reason="transformers (torch) is the reference")
transformers = pytest.importorskip("transformers")

from conftest import small_config  # noqa: E402
from test_export import NLI, TAGS, build, hf_logits, jaxtl_logits, max_diff, perturbed, task  # noqa: E402
from test_hf_parity import jitter  # noqa: E402

from jaxtl import assembly, export, mesh, models, peft  # noqa: E402
from jaxtl import config as config_lib  # noqa: E402
from jaxtl.objectives.language_model import kind_for  # noqa: E402
from jaxtl.regimes import multitask  # noqa: E402

TOL = 1e-5
TINY = dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
# Everything optional at once: biases, a head width that is not hidden/heads, llama3 RoPE
# scaling whose original context (8) is short enough that it changes most frequencies.
LLAMA3 = dict(TINY, attention_bias=True, mlp_bias=True, head_dim=16, rope_theta=500.0,
              rope_scaling={"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                            "high_freq_factor": 4.0, "original_max_position_embeddings": 8})  # fmt: skip


def save_hf(cls, hf_config: dict, path, seed: int = 0):
    torch.manual_seed(seed)
    model = jitter(cls(transformers.LlamaConfig(**hf_config))).eval()
    model.save_pretrained(path)
    return model


def padded(left: bool = False, pad: int = 0, seed: int = 0):
    """Lengths 7, 4, 2; ids 3..99 (never ``pad``)."""
    rng = np.random.default_rng(seed)
    ids = np.full((3, 7), pad, np.int64)
    mask = np.zeros((3, 7), np.int64)
    for i, n in enumerate([7, 4, 2]):
        sl = slice(7 - n, 7) if left else slice(0, n)
        ids[i, sl] = rng.integers(3, 100, n)
        mask[i, sl] = 1
    return ids, mask


def positions(mask):
    """jaxtl's positions: real tokens counted from 0 (HF's default is arange, i.e. the same only
    for right padding)."""
    return np.maximum(np.cumsum(mask, axis=1) - 1, 0)


def hf_states(model, ids, mask, left):
    kw = {"position_ids": torch.tensor(positions(mask))} if left else {}
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                    output_hidden_states=True, **kw)  # fmt: skip
    return [h.numpy() for h in out.hidden_states]


def ours(encoder, ids, mask):
    out = encoder(jnp.asarray(ids, jnp.int32), jnp.asarray(mask, jnp.int32))
    return [np.asarray(h) for h in out.hidden_states]


def assert_close(a_states, b_states, mask, tol=TOL, n: int = 2):
    """Both models' embedding output and ``n`` blocks' outputs agree on real tokens."""
    assert len(a_states) == len(b_states) == n + 1
    real = mask.astype(bool)
    for i, (a, b) in enumerate(zip(a_states, b_states)):
        diff = np.abs(a[real] - b[real]).max()
        assert diff <= tol, f"hidden_states[{i}] differs by {diff:.2e} > {tol:.0e}"


@pytest.mark.parametrize("hf_config", [TINY, LLAMA3], ids=["gqa", "bias_headdim_llama3"])
def test_every_hidden_state_matches_llama_model_with_right_and_left_padding(tmp_path, hf_config):
    ref = save_hf(transformers.LlamaModel, hf_config, tmp_path)
    enc = models.from_pretrained(tmp_path).model
    assert enc.family == "llama" and enc.causal
    assert enc.layers[0].attention.key.kernel[...].shape == (32, 2 * enc.cfg.dim_per_head)
    for left in (False, True):
        ids, mask = padded(left=left)
        assert_close(ours(enc, ids, mask), hf_states(ref, ids, mask, left), mask)
    # Left padding gives the real tokens exactly what right padding gives them, and no NaN.
    r_ids, r_mask = padded()
    l_ids, l_mask = padded(left=True)
    right, left = ours(enc, r_ids, r_mask)[-1], ours(enc, l_ids, l_mask)[-1]
    assert np.isfinite(left).all()
    np.testing.assert_allclose(left[l_mask.astype(bool)], right[r_mask.astype(bool)], atol=TOL)
    # Explicit position_ids (restarting, as packed segments do) are used as given: HF agrees.
    pos = np.broadcast_to(np.array([0, 1, 2, 0, 1, 2, 3]), r_ids.shape)
    restarted = enc(jnp.asarray(r_ids), jnp.asarray(r_mask), position_ids=jnp.asarray(pos))
    with torch.no_grad():
        theirs = ref(input_ids=torch.tensor(r_ids), attention_mask=torch.tensor(r_mask),
                     position_ids=torch.tensor(pos.copy())).last_hidden_state.numpy()  # fmt: skip
    real = r_mask.astype(bool)
    assert np.abs(np.asarray(restarted.last_hidden_state) - theirs)[real].max() <= TOL
    assert np.abs(np.asarray(restarted.last_hidden_state) - right)[real].max() > 1e-3
    # The export is a LlamaModel transformers loads with the same states.
    out = models.save_pretrained(enc, tmp_path / "export")
    again = transformers.AutoModel.from_pretrained(str(out)).eval()
    assert type(again).__name__ == "LlamaModel"
    assert_close(ours(enc, r_ids, r_mask), hf_states(again, r_ids, r_mask, False), r_mask)


@pytest.mark.parametrize("tied", [True, False])
def test_causal_lm_logits_match_llama_for_causal_lm(tmp_path, tied):
    ref = save_hf(transformers.LlamaForCausalLM, dict(TINY, tie_word_embeddings=tied), tmp_path)
    model = models.from_pretrained(tmp_path, load_lm_head=True).model
    head = model.heads["lm"]
    assert isinstance(head, models.CLMHead)
    assert isinstance(head, models.UntiedCLMHead) != tied
    ids, mask = padded()
    _, feats = model.features(jnp.asarray(ids), jnp.asarray(mask))
    logits = np.asarray(head(feats, model.encoder.tied_embedding()))
    with torch.no_grad():
        theirs = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits
    real = mask.astype(bool)
    assert np.abs(logits[real] - theirs.numpy()[real]).max() <= TOL
    out = models.save_pretrained(model, tmp_path / "export")
    written = json.loads((out / "config.json").read_text())
    assert written["architectures"] == ["LlamaForCausalLM"]
    assert written["tie_word_embeddings"] is tied
    again = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval()
    assert torch.equal(again.lm_head.weight, again.model.embed_tokens.weight) == tied
    with torch.no_grad():
        theirs2 = again(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits
    assert np.abs(logits[real] - theirs2.numpy()[real]).max() <= TOL
    # The CLM objective picks itself for a causal encoder, and refuses MLM.
    assert kind_for(model.encoder, "auto") == "clm"
    with pytest.raises(ValueError, match="'llama' is causal"):
        kind_for(model.encoder, "mlm")


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama")
    torch.manual_seed(0)
    transformers.LlamaModel(transformers.LlamaConfig(**TINY)).save_pretrained(path)
    return path


ARCH = {
    "classification": "ForSequenceClassification",
    "tagging": "ForTokenClassification",
    "qa": "ForQuestionAnswering",
}


def _hf_out(hf, kind, args):
    """transformers' logits as jaxtl lays them out (a qa model's start and end as [..., 2])."""
    with torch.no_grad():
        out = hf(**args)
    if kind == "qa":
        return np.stack([out.start_logits.numpy(), out.end_logits.numpy()], -1)
    return out.logits.numpy()


def export_matches_transformers(model, td, out, name: str, hf_config) -> dict:
    """Exports ``td``'s head (parameters perturbed) to ``out`` and checks it is transformers'
    ``<name>For…`` class with jaxtl's logits, right and left padded (HF needs jaxtl's positions
    for left padding: see llama.py); returns the perturbed parameters."""
    kind = td.task.kind
    params = perturbed(model)
    rep = export.export_task_model(model, params, td, out, hf_config=hf_config)
    arch = name + ARCH[kind]
    assert rep["format"] == "transformers" and rep["architecture"] == arch
    hf = getattr(transformers, f"AutoModel{ARCH[kind]}").from_pretrained(out).eval()
    assert type(hf).__name__ == arch
    per_token = kind != "classification"
    for left in (False, True):
        ids, mask = padded(left=left)
        mine = jaxtl_logits(model, params, td.key, ids, mask, None)
        args = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask),
                "position_ids": torch.tensor(positions(mask))}  # fmt: skip
        assert max_diff(mine, _hf_out(hf, kind, args), mask if per_token else None) <= TOL
        if not left:  # right padded, transformers' own positions give the same
            args.pop("position_ids")
            assert max_diff(mine, _hf_out(hf, kind, args), mask if per_token else None) <= TOL
    return params


@pytest.mark.parametrize("kind", ["classification", "tagging", "qa"])
def test_task_model_export_reloads_in_transformers(base_dir, tmp_path, kind):
    """Each task head exports as its transformers Llama head (LlamaForQuestionAnswering keeps
    its LlamaModel under ``transformer.``, the others under ``model.``) with jaxtl's logits, and
    load_task_model reads the folder back."""
    td = task(kind, NLI if kind == "classification" else TAGS if kind == "tagging" else ())
    model, tok, hf_config = build(base_dir, [td])
    head = model.heads[td.key]
    if kind == "classification":  # the default head reads the last real token, without bias
        assert (head.pooling, head.use_bias, head.dropout) == ("last", False, 0.0)
    params = export_matches_transformers(model, td, tmp_path / "out", "Llama", hf_config)
    ids, mask = padded()
    per_token = kind != "classification"
    mine = jaxtl_logits(model, params, td.key, ids, mask, None)
    back, key, info = export.load_task_model(tmp_path / "out")
    assert info["kind"] == kind
    again = jaxtl_logits(back, None, key, ids, mask, None)
    assert max_diff(mine, again, mask if per_token else None) <= TOL


def test_linear_head_pools_the_last_token_of_causal_encoders(base_dir):
    c = config_lib.base_config()
    c.model.head = "linear"
    td = task("classification", NLI)
    llama = models.from_pretrained(base_dir).model
    assert assembly.make_head(td.task, 32, c, nnx.Rngs(0), encoder=llama).pooling == "last"
    bert = models.build_encoder("bert", dict(TINY), rngs=nnx.Rngs(0))
    assert assembly.make_head(td.task, 32, c, nnx.Rngs(0), encoder=bert).pooling == "cls"
    c.model.pooling = "mean"
    assert assembly.make_head(td.task, 32, c, nnx.Rngs(0), encoder=llama).pooling == "mean"


def test_lora_targets_llama_projections_and_merges_exactly(base_dir, tmp_path):
    td = task("classification", NLI)
    c = config_lib.base_config()
    c.optim.strategy = "lora"
    c.optim.lora_rank, c.optim.lora_alpha, c.optim.lora_mlp = 4, 8.0, True
    model, _, hf_config = build(base_dir, [td], c)
    layer = model.encoder.layers[0]
    wrapped = {n for n in ("query", "key", "value", "output")
               if isinstance(getattr(layer.attention, n), peft.LoRALinear)}  # fmt: skip
    wrapped |= {f"mlp.{n}" for n in ("gate", "intermediate", "output")
                if isinstance(getattr(layer.mlp, n), peft.LoRALinear)}  # fmt: skip
    assert wrapped == {"query", "key", "value", "output", "mlp.gate", "mlp.intermediate",
                       "mlp.output"}  # fmt: skip
    params = perturbed(model, seed=4, where=lambda p: "lora_" in p or p.startswith("heads/"))
    ids, mask = padded()
    mine = jaxtl_logits(model, params, td.key, ids, mask, None)
    export.export_task_model(model, params, td, tmp_path / "merged", hf_config=hf_config)
    merged = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged")
    assert max_diff(mine, hf_logits(merged, ids, mask, None)) <= TOL
    # The same factors as a PEFT adapter over the base checkpoint, under Llama's module names.
    peft_lib = pytest.importorskip("peft")
    rep = export.export_peft_adapter(model, params, td, tmp_path / "adapter",
                                     base_hf_config=hf_config, base_dir=base_dir)  # fmt: skip
    assert rep["target_modules"] == ["mlp.down_proj", "mlp.gate_proj", "mlp.up_proj",
                                     "self_attn.k_proj", "self_attn.o_proj", "self_attn.q_proj",
                                     "self_attn.v_proj"]  # fmt: skip
    assert rep["modules_to_save"] == ["score"] and rep["tensors"] == 2 * 7 * 2 + 1
    hf_base = transformers.AutoModelForSequenceClassification.from_pretrained(
        base_dir, num_labels=3, pad_token_id=0
    )
    loaded = peft_lib.PeftModel.from_pretrained(hf_base, tmp_path / "adapter")
    assert max_diff(mine, hf_logits(loaded, ids, mask, None)) <= TOL


def test_a_lora_qa_adapter_targets_the_transformer_prefix_and_gives_the_merged_logits(
    base_dir, tmp_path
):
    """LlamaForQuestionAnswering keeps its LlamaModel under ``transformer.``: the adapter's
    modules are named there, and PEFT over the base checkpoint gives jaxtl's start/end logits."""
    peft_lib = pytest.importorskip("peft")
    td = task("qa")
    c = config_lib.base_config()
    c.optim.strategy = "lora"
    c.optim.lora_rank, c.optim.lora_alpha = 4, 8.0
    model, _, hf_config = build(base_dir, [td], c)
    params = perturbed(model, seed=5, where=lambda p: "lora_" in p or p.startswith("heads/"))
    ids, mask = padded()
    mine = jaxtl_logits(model, params, td.key, ids, mask, None)
    rep = export.export_peft_adapter(model, params, td, tmp_path / "adapter",
                                     base_hf_config=hf_config, base_dir=base_dir)  # fmt: skip
    assert rep["modules_to_save"] == ["qa_outputs"]
    from safetensors.numpy import load_file

    names = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert any(n.startswith("base_model.model.transformer.layers.0.") for n in names), sorted(names)
    hf_base = transformers.AutoModelForQuestionAnswering.from_pretrained(base_dir)
    loaded = peft_lib.PeftModel.from_pretrained(hf_base, tmp_path / "adapter").eval()
    args = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
    assert max_diff(mine, _hf_out(loaded, "qa", args), mask) <= TOL


def test_parameter_paths_carry_logical_axis_names():
    enc = models.build_encoder("llama", TINY, rngs=nnx.Rngs(0))
    names = mesh.logical_specs(nnx.state(enc, nnx.Param))
    assert all(names.values()), "every parameter carries logical axis names"
    assert names["embeddings/word/embedding"] == ("vocab", "embed")
    assert names["layers/0/attention/key/kernel"] == ("embed", "heads")
    assert names["layers/0/mlp/gate/kernel"] == ("embed", "mlp")
    assert names["layers/1/mlp_norm/scale"] == ("norm",)
    assert names["final_norm/scale"] == ("norm",)


def test_bfloat16_compute(tmp_path):
    enc = models.build_encoder("llama", TINY, rngs=nnx.Rngs(1))
    models.save_pretrained(enc, tmp_path)
    enc16 = models.from_pretrained(tmp_path, dtype=jnp.bfloat16).model
    assert enc16.layers[0].attention.query.kernel[...].dtype == jnp.float32
    ids, mask = padded()
    out = enc16(jnp.asarray(ids), jnp.asarray(mask))
    assert all(h.dtype == jnp.bfloat16 for h in out.hidden_states)
    real = mask.astype(bool)
    a = ours(enc, ids, mask)[-1]
    assert np.abs(a[real] - np.asarray(out.last_hidden_state, np.float32)[real]).max() < 0.1


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_sharded_half_precision_checkpoint_loads(tmp_path, dtype):
    """A checkpoint saved in fp16 / bf16 and sharded (``model.safetensors.index.json``), as Hub
    Llamas are, loads into float32 parameters and matches the same weights in transformers."""
    torch.manual_seed(0)
    ref = jitter(transformers.LlamaModel(transformers.LlamaConfig(**TINY)))
    ref.to(getattr(torch, dtype)).save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    enc = models.from_pretrained(tmp_path).model
    assert enc.layers[0].mlp.gate.kernel[...].dtype == jnp.float32
    # Reloaded in float32 (not ref.float()): .to(bfloat16) also rounds RoPE's inv_freq buffer.
    ref = transformers.LlamaModel.from_pretrained(tmp_path, dtype=torch.float32).eval()
    ids, mask = padded()
    assert_close(ours(enc, ids, mask), hf_states(ref, ids, mask, False), mask)


@pytest.mark.parametrize(
    "edit,message",
    [
        ({"rope_scaling": {"rope_type": "yarn", "factor": 2.0}},
         r"unsupported config attribute rope_scaling\.rope_type='yarn'"),
        ({"rope_parameters": {"rope_type": "dynamic", "rope_theta": 1e4, "factor": 2.0}},
         r"unsupported config attribute rope_parameters\.rope_type='dynamic'"),
        ({"partial_rotary_factor": 0.5}, "unsupported config attribute partial_rotary_factor=0.5"),
        ({"hidden_act": "quick_gelu"}, "unsupported config attribute hidden_act='quick_gelu'"),
        ({"rope_scaling": {"rope_type": "linear"}}, "rope_scaling of rope_type 'linear' lacks"),
        ({"num_key_value_heads": 3}, "num_key_value_heads=3 does not divide"),
        ({"hidden_size": None}, "lacks required attribute 'hidden_size'"),
    ],
)  # fmt: skip
def test_config_errors_name_the_attribute(edit, message):
    hf_config = {k: v for k, v in {**TINY, **edit}.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        models.build_encoder("llama", hf_config, rngs=nnx.Rngs(0))


def test_rope_settings_read_from_both_config_layouts():
    """transformers 5's rope_parameters and 4.x's rope_theta + rope_scaling give one config,
    and it is written back in both layouts."""
    fam = models.FAMILIES["llama"]
    new = fam.config_from_hf({**TINY, "rope_parameters": {"rope_type": "linear", "factor": 2.0,
                                                          "rope_theta": 500.0}})  # fmt: skip
    old = fam.config_from_hf({**TINY, "rope_theta": 500.0,
                              "rope_scaling": {"type": "linear", "factor": 2.0}})  # fmt: skip
    assert new == old and (new.rope_type, new.rope_factor, new.rope_theta) == ("linear", 2.0, 500.0)
    out = fam.config_to_hf(new)
    assert out["rope_parameters"]["rope_theta"] == out["rope_theta"] == 500.0
    assert fam.config_from_hf({**TINY, **out}) == new


@pytest.mark.parametrize("kind", ["classification", "tagging"])
def test_packed_rows_give_each_example_its_unpacked_logits(kind):
    """Several examples per row (jaxtl.data.packing: a segment pair mask ANDed with causality,
    positions restarting per example, the head pooling each segment's last token) give each
    example the logits it gets alone, to 1e-5."""
    from conftest import minilm_dir
    from test_packing import _logits, _per_example

    from jaxtl.data import batching, get_task, packing, tokenize
    from jaxtl.models import hf

    task = get_task({"classification": "builtin/sentiment", "tagging": "builtin/ner"}[kind])
    examples = task.load("dev")[:12]
    enc = tokenize.encode(task, examples, hf.load_tokenizer(minilm_dir()), max_length=32)
    encoder = models.build_encoder("llama", dict(TINY, vocab_size=30522), rngs=nnx.Rngs(0))
    head = assembly.make_head(task, 32, config_lib.base_config(), nnx.Rngs(1), encoder=encoder)
    model = models.TransferModel(encoder, {"t": head})
    flat = batching.eval_batches(enc, batch_size=4, buckets=(32, 64), pad_id=0)
    packed = packing.eval_batches(enc, batch_size=4, buckets=(32, 64), pad_id=0)
    assert max(int((b["example_weight"] > 0).sum(1).max()) for b in packed) >= 2
    token = kind == "tagging"
    a = _per_example(flat, [_logits(model, b) for b in flat], enc, token, (32, 64))
    b = _per_example(packed, [_logits(model, b) for b in packed], enc, token, (32, 64))
    assert sorted(a) == sorted(b) == list(range(len(examples)))
    assert max(float(np.max(np.abs(a[i] - b[i]))) for i in a) <= TOL


# --- one multitask run -------------------------------------------------------------------------


def byte_level_tokenizer():
    """A byte-level BPE tokenizer (Llama 3 / SmolLM style: no pad token, <s> first) trained
    offline on a few sentences."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors, trainers
    from tokenizers import models as tok_models
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(tok_models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    text = ["the film was great and the plot was fine", "Alice met Bob in Paris on Monday",
            "a dull slow movie", "what a wonderful story"]  # fmt: skip
    bpe.train_from_iterator(text * 20, trainer)
    bpe.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A </s> $B", special_tokens=[("<s>", 0), ("</s>", 1)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>")


def llama_dir(path):
    tok = byte_level_tokenizer()
    assert tok.pad_token_id is None
    hf_config = dict(TINY, vocab_size=len(tok), max_position_embeddings=128)
    enc = models.build_encoder("llama", hf_config, rngs=nnx.Rngs(0))
    models.save_pretrained(enc, path, tokenizer=tok, hf_config=hf_config)
    return path


def test_multitask_smoke(tmp_path):
    model_dir = llama_dir(tmp_path / "model")
    c = multitask.add_config(config_lib.base_config())
    c.tasks.names = ("builtin/sentiment", "builtin/ner")
    # FSDP over the 8 fake CPU devices (data 4 x fsdp 2): parameters and moments sharded.
    c = small_config(c, model_dir, **{"train.steps": 3, "data.max_length": 32, "mesh.fsdp": 2})
    multitask.run(c, str(tmp_path / "work"))
    results = json.loads((tmp_path / "work" / "results.json").read_text())
    assert {"builtin/sentiment", "builtin/ner"} <= set(results), results
    assert all(np.isfinite(v) for r in results.values() if isinstance(r, dict)
               for v in r.values() if isinstance(v, float))  # fmt: skip


@pytest.mark.slow  # ~80 s on the shared 2-core CPU: two stages, each compiled
def test_causal_lm_pretraining_then_adaptation_smoke(tmp_path):
    """unsupervised_sequential on the tiny Llama: causal LM on builtin/corpus (a fresh untied LM
    head: the saved decoder has none), then the target task."""
    from jaxtl.configs import unsupervised_sequential as unsupervised_config
    from jaxtl.regimes import unsupervised_sequential

    model_dir = llama_dir(tmp_path / "model")
    c = unsupervised_config.get_config("tiny")
    c.model.name = str(model_dir)
    c.pretrain.steps, c.pretrain.block_size, c.train.steps = 3, 32, 2
    c.checkpoint.every_steps, c.train.progress = 0, False
    unsupervised_sequential.run(c, str(tmp_path / "work"))
    results = json.loads((tmp_path / "work" / "results.json").read_text())
    assert np.isfinite(results["builtin/corpus"]["perplexity"]), results
