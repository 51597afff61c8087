"""ALBERT against transformers: every hidden state of ``AlbertModel`` with its layers sharing
blocks as the released models do (one group of one block) and as its config allows (several
groups, several blocks a group), the bare encoder's export, the MLM head, the task heads'
exports (the sequence head's pretrained pooler), a LoRA classifier's PEFT adapter, packed rows,
strategies that count the shared blocks, and config errors.

Tolerance: 1e-5 max abs difference (fp32) on real-token positions, as tests/test_family_llama.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch", reason="transformers (torch) is the reference")
transformers = pytest.importorskip("transformers")

from test_export import (  # noqa: E402
    NLI,
    TAGS,
    build,
    config,
    hf_logits,
    jaxtl_logits,
    max_diff,
    perturbed,
    task,
)
from test_family_llama import assert_close, ours, padded  # noqa: E402
from test_family_llama_variants import (  # noqa: E402
    assert_packed_rows_match,
    assert_peft_adapter_matches,
)
from test_hf_parity import jitter  # noqa: E402

from jaxtl import export, models, partition  # noqa: E402
from jaxtl.strategy import Strategy  # noqa: E402

TOL = 1e-5
TINY = dict(vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=4,
            num_attention_heads=4, intermediate_size=64, max_position_embeddings=40)  # fmt: skip
SHARING = {  # name: (num_hidden_groups, inner_group_num, num_hidden_layers)
    "one_block": (1, 1, 4),  # albert-base-v2's layout: one block run by every layer
    "two_groups": (2, 1, 4),
    "two_inner": (1, 2, 3),
    "two_by_two": (2, 2, 4),
}


def albert_config(sharing: str = "one_block", **extra):
    groups, inner, layers = SHARING[sharing]
    return transformers.AlbertConfig(**{**TINY, **extra, "num_hidden_layers": layers},
                                     num_hidden_groups=groups, inner_group_num=inner)  # fmt: skip


def save_hf(path, cls: str = "AlbertModel", sharing: str = "one_block", seed: int = 0):
    torch.manual_seed(seed)
    model = jitter(getattr(transformers, cls)(albert_config(sharing))).eval()
    model.save_pretrained(path)
    return model


def states(model, ids, mask):
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                    output_hidden_states=True)  # fmt: skip
    return [h.numpy() for h in out.hidden_states]


@pytest.mark.parametrize("sharing", sorted(SHARING))
def test_every_hidden_state_matches_transformers_with_shared_blocks(tmp_path, sharing):
    """One hidden state per layer application (transformers records every block it runs),
    from ``layers`` holding each distinct block once."""
    ref = save_hf(tmp_path, sharing=sharing)
    enc = models.from_pretrained(tmp_path).model
    groups, inner, layers = SHARING[sharing]
    assert enc.family == "albert" and len(enc.layers) == groups * inner
    assert enc.num_layers == layers * inner
    for left in (False, True):
        ids, mask = padded(left=left)
        assert_close(ours(enc, ids, mask), states(ref, ids, mask), mask, TOL, n=enc.num_layers)
    # The bare encoder saves as AlbertModel, sharing kept, and transformers loads it exactly.
    out = models.save_pretrained(enc, tmp_path / "export")
    written = json.loads((out / "config.json").read_text())
    assert written["architectures"] == ["AlbertModel"]
    assert (written["num_hidden_groups"], written["inner_group_num"]) == (groups, inner)
    again = transformers.AutoModel.from_pretrained(str(out)).eval()
    ids, mask = padded()
    assert_close(ours(enc, ids, mask), states(again, ids, mask), mask, TOL, n=enc.num_layers)


def test_mlm_head_matches_and_exports_as_albert_for_masked_lm(tmp_path):
    ref = save_hf(tmp_path, "AlbertForMaskedLM")
    model = models.from_pretrained(tmp_path, load_lm_head=True).model
    ids, mask = padded()
    import jax.numpy as jnp

    _, feats = model.features(jnp.asarray(ids), jnp.asarray(mask))
    mine = np.asarray(model.heads["lm"](feats, model.encoder.tied_embedding()))
    assert max_diff(mine, hf_logits(ref, ids, mask, None), mask) <= TOL
    out = models.save_pretrained(model, tmp_path / "export")
    again = transformers.AutoModelForMaskedLM.from_pretrained(str(out)).eval()
    assert type(again).__name__ == "AlbertForMaskedLM"
    assert max_diff(mine, hf_logits(again, ids, mask, None), mask) <= TOL


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("albert")
    # as the released checkpoints hold it: the pooler, the MLM head, the sentence-order head
    save_hf(path, "AlbertForPreTraining")
    return path


@pytest.mark.parametrize("kind", ["classification", "tagging", "qa"])
def test_task_model_export_reloads_in_transformers(base_dir, tmp_path, kind):
    td = task(kind, NLI if kind == "classification" else TAGS if kind == "tagging" else ())
    model, _, hf_config = build(base_dir, [td])
    if kind == "classification":  # the pretrained pooler is the head's dense layer
        from safetensors.numpy import load_file

        pooler = load_file(str(base_dir / "model.safetensors"))["albert.pooler.weight"]
        np.testing.assert_array_equal(np.asarray(model.heads[td.key].dense.kernel[...]), pooler.T)
    params = perturbed(model)
    rep = export.export_task_model(model, params, td, tmp_path / "out", hf_config=hf_config)
    arch = {"classification": "SequenceClassification", "tagging": "TokenClassification",
            "qa": "QuestionAnswering"}[kind]  # fmt: skip
    assert rep["format"] == "transformers" and rep["architecture"] == f"AlbertFor{arch}"
    hf = getattr(transformers, f"AutoModelFor{arch}").from_pretrained(tmp_path / "out").eval()
    assert type(hf).__name__ == f"AlbertFor{arch}"
    ids, mask = padded()
    mine = jaxtl_logits(model, params, td.key, ids, mask, None)
    args = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
    with torch.no_grad():
        got = hf(**args)
    if kind == "qa":
        assert max_diff(mine[..., 0], got.start_logits.numpy(), mask) <= TOL
        assert max_diff(mine[..., 1], got.end_logits.numpy(), mask) <= TOL
    else:
        assert max_diff(mine, got.logits.numpy(), None if kind == "classification" else mask) <= TOL
    if kind != "qa":  # the head's dropout, under the attribute transformers' ALBERT heads read
        written = json.loads((tmp_path / "out" / "config.json").read_text())
        assert written["classifier_dropout_prob"] == model.heads[td.key].dropout


def test_a_lora_classifiers_peft_adapter_loads_over_albert(base_dir, tmp_path):
    """LoRA wraps the shared block once: every layer that runs it runs the same factors, as
    PEFT's LoRA on transformers' shared module."""
    assert_peft_adapter_matches(base_dir, tmp_path / "adapter", "AlbertForSequenceClassification")
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert "attention.query" in cfg["target_modules"], cfg["target_modules"]


def test_packed_rows_give_each_example_its_unpacked_logits():
    hf_config = albert_config("two_groups", vocab_size=30522).to_dict()
    assert_packed_rows_match(models.build_encoder("albert", hf_config, rngs=nnx.Rngs(0)))


def test_strategies_count_the_distinct_blocks(base_dir):
    """albert-base-v2's layers share one block: gradual unfreezing thaws the head, then that
    block, then the embeddings (not twelve layers that are one), and a top-k beyond the blocks
    says why it stops."""
    c = config()
    model, _, _ = build(base_dir, [task("classification", NLI)], c)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    assert model.encoder.num_layers == 4 and partition.num_blocks(params) == 1
    c.optim.strategy = "gradual_unfreezing"
    phases = Strategy.of(c.optim).phases(params, total_steps=30)  # blocks counted in params
    assert [p.name for p in phases] == ["gradual_unfreezing/top_1", "gradual_unfreezing/all"]
    c.optim.strategy, c.optim.top_k = "top_k", 2
    with pytest.raises(ValueError, match=r"\[0, 1\] for an encoder of 1 layer blocks"):
        Strategy.of(c.optim).phases(params, total_steps=30)


def test_a_saved_config_reads_back_as_the_same_config():
    fam = models.FAMILIES["albert"]
    for sharing in SHARING:
        hf_config = albert_config(sharing).to_dict()
        cfg = fam.config_from_hf(hf_config)
        assert cfg.hidden_act == "gelu_new" and cfg.hidden_dropout == 0.0
        assert fam.config_from_hf({**hf_config, **fam.config_to_hf(cfg)}) == cfg, sharing


@pytest.mark.parametrize(
    "edit,message",
    [
        ({"num_hidden_groups": 5}, "expected 1 <= num_hidden_groups <= num_hidden_layers=4"),
        ({"inner_group_num": 0}, "inner_group_num >= 1"),
        ({"embedding_size": None}, "lacks required attribute 'embedding_size'"),
        ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
    ],
)  # fmt: skip
def test_config_errors_name_the_attribute(edit, message):
    hf_config = {k: v for k, v in {**TINY, "model_type": "albert", **edit}.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        models.build_encoder("albert", hf_config, rngs=nnx.Rngs(0))


def albert_dir(path, sharing: str = "one_block"):
    """A tiny ALBERT with a real AlbertTokenizer (SentencePiece-style Unigram, fast) built
    offline over characters, ids as albert-base-v2's: <pad> <unk> [CLS] [SEP] [MASK] first."""
    import string

    pieces = ["▁"] + [c for c in string.printable if not c.isspace()]
    vocab = [(t, 0.0) for t in ("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]")]
    vocab += [(p, -1.0) for p in pieces]
    tok = transformers.AlbertTokenizer(vocab=vocab)
    hf_config = albert_config(sharing, vocab_size=len(vocab), max_position_embeddings=64).to_dict()
    enc = models.build_encoder("albert", hf_config, rngs=nnx.Rngs(0))
    models.save_pretrained(enc, path, tokenizer=tok, hf_config=hf_config)
    return path


def test_albert_tokenizer_round_trip(tmp_path):
    pre = models.from_pretrained(albert_dir(tmp_path))
    tok = pre.tokenizer
    assert type(tok).__name__ == "AlbertTokenizer" and tok.is_fast
    assert (tok.pad_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == (0, 2, 3, 4)
    ids = tok("Alice met Bob.", "In Paris.")
    assert ids["input_ids"][0] == 2 and ids["token_type_ids"][-1] == 1


def test_an_exported_pair_classifier_gets_its_segment_ids_in_transformers(tmp_path):
    """transformers 5's AlbertTokenizer leaves token_type_ids out of its outputs, so a pipeline
    would run a sentence pair's second sentence as segment 0; the export lists them in
    model_input_names, and the exported model then gives jaxtl's logits from transformers' own
    tokenization, whose segment ids are those jaxtl trains with."""
    from jaxtl.data import tokenize
    from jaxtl.data.tasks import Example

    td = task("classification", NLI)
    model, tok, hf_config = build(albert_dir(tmp_path / "base"), [td])
    params = perturbed(model)
    export.export_task_model(model, params, td, tmp_path / "out", tokenizer=tok,
                             hf_config=hf_config)  # fmt: skip
    pairs = (["Alice met Bob.", "It rains"], ["They met in Paris.", "The sun shines"])
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "out")(*pairs)
    assert "token_type_ids" in theirs
    examples = [Example(a, b) for a, b in zip(*pairs)]
    mine = tokenize.encode(td.task, examples, tok, max_length=64, labelled=False)
    for i in range(2):
        np.testing.assert_array_equal(mine.input_ids[i], theirs["input_ids"][i])
        np.testing.assert_array_equal(mine.token_type_ids[i], theirs["token_type_ids"][i])
    assert max(max(t) for t in theirs["token_type_ids"]) == 1
    pipe = transformers.pipeline("text-classification", model=str(tmp_path / "out"),
                                 top_k=None, function_to_apply="none")  # fmt: skip
    got = pipe([{"text": a, "text_pair": b} for a, b in zip(*pairs)])
    for i, scores in enumerate(got):
        ids, types = mine.input_ids[i][None], mine.token_type_ids[i][None]
        logits = jaxtl_logits(model, params, td.key, ids, np.ones_like(ids), types)[0]
        by_label = {s["label"]: s["score"] for s in scores}
        assert max(abs(by_label[n] - logits[j]) for j, n in enumerate(NLI)) <= TOL


def test_a_bare_encoder_export_carries_the_checkpoints_pooler(base_dir, tmp_path):
    """AlbertModel holds the pooler: the export carries the checkpoint's (nothing missing)."""
    pre = models.from_pretrained(base_dir)
    out = models.save_pretrained(pre.model, tmp_path / "out", hf_config=pre.hf_config)
    theirs, info = transformers.AutoModel.from_pretrained(str(out), output_loading_info=True)
    assert not info["missing_keys"], info
    original = transformers.AlbertForPreTraining.from_pretrained(str(base_dir)).albert
    assert torch.equal(theirs.pooler.weight, original.pooler.weight)
