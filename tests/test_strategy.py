"""One strategy object per stage: LoRA surgery follows every stage's strategy, and each stage
trains exactly what its plan.json entry says (another stage's LoRA factors stay frozen)."""

import json

import numpy as np
import pytest
from conftest import small_config
from flax import nnx

from jaxtl import checkpoint as ckpt_lib
from jaxtl import config as config_lib
from jaxtl import paths, peft
from jaxtl.partition import default_optim_config
from jaxtl.regimes import supervised_sequential, unsupervised_sequential
from jaxtl.strategy import Strategy


def _small(c, model_dir):
    sizes = {"train.log_every": 2, "data.max_train_examples": 64, "data.max_eval_examples": 16}
    return small_config(c, model_dir, **sizes)


def _stage_rows(wd, stage):
    phases = json.loads((wd / "plan.json").read_text())["phases"]
    (ph,) = [p for p in phases if p["stage"] == stage]
    return {r["path"]: r["trainable"] for r in ph["params"]}


def _best(wd, stage, like):
    params, _ = ckpt_lib.load_params(wd / "best" / stage, like)
    return paths.flatten(params)


def test_strategy_rejects_unknown_values_before_model_work():
    bad = default_optim_config()
    bad.strategy = "lorra"
    with pytest.raises(ValueError, match="lorra"):
        Strategy.of(bad)


def test_finetune_stage_after_lora_stage_trains_exactly_its_plan(tiny_bert_dir, tmp_path):
    """LoRA source stage (surgery driven by source.optim), then a finetune target stage."""
    c = supervised_sequential.add_config(config_lib.base_config())
    _small(c, tiny_bert_dir)
    c.source.steps, c.train.steps = 4, 4
    c.source.optim.strategy = "lora"
    c.source.optim.lora_rank = 2
    c.optim.lr = 1e-3
    config_lib.finalize(c)
    wd = tmp_path / "run"
    supervised_sequential.run(c, str(wd))

    src, tgt = _stage_rows(wd, "source"), _stage_rows(wd, "target")
    lora = {p for p in src if p.endswith(("lora_a", "lora_b"))}
    assert lora, "source.optim.strategy=lora applied no surgery"
    # The LoRA stage trains its factors and its own head, nothing else of the encoder.
    assert {p for p, t in src.items() if t and p.startswith("encoder/")} == lora
    # The finetune stage trains the whole encoder except the LoRA factors, which it freezes.
    assert not any(tgt[p] for p in lora)
    assert all(t for p, t in tgt.items() if p.startswith("encoder/") and p not in lora)

    like = nnx.to_pure_dict(nnx.state(_model_like(c), nnx.Param))
    before, after = _best(wd, "source", like), _best(wd, "target", like)
    changed = {p for p in before if not np.array_equal(before[p], after[p])}
    frozen = {p for p, t in tgt.items() if not t}
    assert changed and changed <= {p for p, t in tgt.items() if t}
    assert not changed & frozen  # LoRA factors and the source head did not move
    # ...and the source stage really trained the LoRA factors (B starts at zero).
    assert any(np.abs(before[p]).max() > 0 for p in lora if p.endswith("lora_b"))


def _model_like(c):
    from jaxtl import assembly
    from jaxtl.data.prepare import prepare_tasks

    pre = assembly.load_encoder(c)
    names = list(c.source.tasks) + list(c.target.tasks)
    tds = prepare_tasks(names, c, pre.tokenizer, with_train=False, with_eval=False)
    return assembly.build_model(pre.model, tds, c, optims=(c.source.optim, c.optim))


def test_lora_pretraining_stage(tiny_bert_dir, tmp_path):
    """pretrain.optim.strategy=lora: the LM stage trains LoRA factors (+ LM head), then adapts."""
    c = unsupervised_sequential.add_config(config_lib.base_config())
    _small(c, tiny_bert_dir)
    c.pretrain.steps, c.train.steps = 3, 3
    c.pretrain.block_size = 32
    c.pretrain.optim.strategy = "lora"
    config_lib.finalize(c)
    wd = tmp_path / "run"
    results = unsupervised_sequential.run(c, str(wd))
    assert "perplexity" in results["builtin/corpus"]
    pre = _stage_rows(wd, "pretrain")
    enc_trained = {p for p, t in pre.items() if t and p.startswith("encoder/")}
    assert enc_trained and all(p.endswith(("lora_a", "lora_b")) for p in enc_trained)
    adapt = _stage_rows(wd, "adapt")
    assert not any(t for p, t in adapt.items() if p.endswith(("lora_a", "lora_b")))


def test_surgery_is_applied_once_for_two_lora_stages(tiny_bert_dir):
    from jaxtl import models

    enc = models.from_pretrained(str(tiny_bert_dir)).model
    o = default_optim_config()
    o.strategy = "lora"
    for _ in range(2):
        Strategy.of(o).surgery(enc, rngs=nnx.Rngs(0))
    n = sum(isinstance(m, peft.LoRALinear) for _, m in enc.iter_modules())
    assert n == 2 * 4  # query, key, value, output in each of the 2 layers, wrapped once
