"""LoRA and adapters: surgery keeps pretrained paths, starts as the identity, merges and exports."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxtl import paths, peft
from jaxtl.models import BertConfig, BertEncoder
from jaxtl.partition import default_optim_config, phases_from_config
from jaxtl.strategy import Strategy

TOL = 1e-5  # float32 forward passes of a tiny model


def tiny(seed: int = 0) -> BertEncoder:
    cfg = BertConfig(
        vocab_size=100, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64
    )
    return BertEncoder(cfg, rngs=nnx.Rngs(seed))


def flat_params(module) -> dict:
    return paths.flatten(nnx.to_pure_dict(nnx.state(module, nnx.Param)))


def perturb_lora_b(module, seed: int = 3, scale: float = 0.05) -> None:
    key = jax.random.key(seed)
    for _, m in module.iter_modules():
        if isinstance(m, peft.LoRALinear):
            key, sub = jax.random.split(key)
            m.lora_b.value = scale * jax.random.normal(sub, m.lora_b.value.shape)


IDS = jnp.asarray(np.random.default_rng(0).integers(1, 100, (2, 7)))
MASK = jnp.asarray([[1] * 7, [1] * 5 + [0] * 2])


def test_lora_keeps_paths_starts_as_identity_and_merges():
    enc = tiny()
    ref = enc(IDS, MASK).last_hidden_state
    before = flat_params(enc)
    peft.apply_lora(enc, rank=4, alpha=8.0, mlp=True, rngs=nnx.Rngs(1))
    after = flat_params(enc)
    for p, v in before.items():  # every pretrained weight is still there, unchanged
        np.testing.assert_array_equal(after[p], v)
    added = set(after) - set(before)
    assert added and all(p.endswith(("/lora_a", "/lora_b")) for p in added)
    assert len(added) == 2 * 2 * (4 + 2)  # 2 layers x (q, k, v, o, intermediate, output)
    np.testing.assert_allclose(enc(IDS, MASK).last_hidden_state, ref, atol=TOL)  # B = 0

    perturb_lora_b(enc)
    lora_out = enc(IDS, MASK).last_hidden_state
    assert np.abs(lora_out - ref).max() > 1e-3  # the perturbation matters
    merged = peft.merge_lora(enc)
    assert set(flat_params(merged)) == set(before)
    assert not any(isinstance(m, peft.LoRALinear) for _, m in merged.iter_modules())
    np.testing.assert_allclose(merged(IDS, MASK).last_hidden_state, lora_out, atol=TOL)
    # merge_lora copies: the LoRA model is untouched.
    assert any(isinstance(m, peft.LoRALinear) for _, m in enc.iter_modules())


def test_adapters_start_as_identity_and_train_with_norms_and_heads():
    enc = tiny()
    ref = enc(IDS, MASK).last_hidden_state
    before = flat_params(enc)
    peft.apply_adapters(enc, size=8, rngs=nnx.Rngs(2))
    after = flat_params(enc)
    assert set(before) < set(after)
    added = set(after) - set(before)
    assert added and all("/output/adapter/" in p for p in added)
    np.testing.assert_allclose(enc(IDS, MASK).last_hidden_state, ref, atol=TOL)

    params = {"encoder": nnx.to_pure_dict(nnx.state(enc, nnx.Param)), "heads": _head()}
    cfg = default_optim_config()
    cfg.strategy = "adapters"
    (phase,) = phases_from_config(cfg, params, num_layers=2, total_steps=4)
    trainable = {p for p, t in paths.flatten(phase.trainable_mask).items() if t}
    expect = {
        p
        for p in paths.iter_paths(params)
        if "/adapter/" in p or p.startswith("heads/") or "norm/" in p
    }
    assert trainable == expect
    assert any(p.startswith("encoder/embeddings/norm/") for p in trainable)
    assert not any(p.endswith("attention/output/kernel") for p in trainable)


def _head() -> dict:
    return {"cls": {"kernel": jnp.zeros((32, 3)), "bias": jnp.zeros((3,))}}


def test_lora_strategy_trains_only_lora_and_heads_and_surgery_errors():
    enc = tiny()
    cfg = default_optim_config()
    cfg.strategy = "lora"
    Strategy.of(cfg).surgery(enc, rngs=nnx.Rngs(0))
    params = {"encoder": nnx.to_pure_dict(nnx.state(enc, nnx.Param)), "heads": _head()}
    (phase,) = phases_from_config(cfg, params, num_layers=2, total_steps=4)
    trainable = {p for p, t in paths.flatten(phase.trainable_mask).items() if t}
    assert trainable == {
        p for p in paths.iter_paths(params) if p.endswith(("lora_a", "lora_b")) or "heads/" in p
    }
    # A model without LoRA params: the preset's LoRA rule matches nothing and says so.
    plain = {"encoder": nnx.to_pure_dict(nnx.state(tiny(), nnx.Param)), "heads": _head()}
    with pytest.raises(ValueError, match="lora"):
        phases_from_config(cfg, plain, num_layers=2, total_steps=4)

    class NoAttention(nnx.Module):
        def __init__(self):
            self.layers = nnx.List([nnx.Module()])

    with pytest.raises(ValueError, match="layer 0"):
        peft.apply_lora(NoAttention(), rngs=nnx.Rngs(0))


def test_lora_on_minilm_is_small_and_merged_export_matches_transformers(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from jaxtl.models import from_pretrained, save_pretrained

    enc, tokenizer, hf_config, _ = from_pretrained("minilm")
    peft.apply_lora(enc, rank=8, alpha=16.0, rngs=nnx.Rngs(0))
    params = {"encoder": nnx.to_pure_dict(nnx.state(enc, nnx.Param)), "heads": _head_for(384)}
    cfg = default_optim_config()
    cfg.strategy = "lora"
    (phase,) = phases_from_config(cfg, params, num_layers=6, total_steps=4)
    total = phase.plan.trainable_params + phase.plan.frozen_params
    assert phase.plan.trainable_params / total < 0.02, phase.plan.summary()

    perturb_lora_b(enc, scale=0.02)
    batch = tokenizer(["transfer learning in jax", "a shorter one"], padding=True)
    ids, mask = np.asarray(batch["input_ids"]), np.asarray(batch["attention_mask"])
    ours = np.asarray(enc(jnp.asarray(ids), jnp.asarray(mask)).last_hidden_state)
    out = save_pretrained(peft.merge_lora(enc), tmp_path / "merged", hf_config=hf_config)
    hf = transformers.AutoModel.from_pretrained(str(out)).eval()
    with torch.no_grad():
        theirs = hf(
            input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask)
        ).last_hidden_state.numpy()
    keep = mask.astype(bool)  # padded positions are not compared
    assert np.abs(ours[keep] - theirs[keep]).max() <= 1e-4
    # The LoRA update is really in the export (not the untouched pretrained weights).
    base, *_ = from_pretrained("minilm")
    plain = np.asarray(base(jnp.asarray(ids), jnp.asarray(mask)).last_hidden_state)
    assert np.abs(plain[keep] - theirs[keep]).max() > 1e-3


def _head_for(h: int) -> dict:
    return {"cls": {"kernel": jnp.zeros((h, 2)), "bias": jnp.zeros((2,))}}
