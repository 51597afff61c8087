"""jaxtl encoders against the PyTorch reference (transformers), in and out: BERT, RoBERTa,
XLM-RoBERTa, ELECTRA, DistilBERT, GPT-2 (and the BiLSTM's own round trip).

Tiny random HF models are built with torch, saved as safetensors, loaded with
``jaxtl.models.from_pretrained`` and compared layer by layer (real-token positions only, since
padded positions are not meaningful in either implementation).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is the numerical reference for parity tests")
transformers = pytest.importorskip("transformers")

import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from jaxtl import models  # noqa: E402

TOL = 1e-5  # fp32, tiny models
TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=40)  # fmt: skip


def batch(pad_id: int, *, seed: int = 0, left: bool = False, token_types: bool = True):
    """A padded batch: lengths 7, 4, 2 (right padding unless ``left``)."""
    rng = np.random.default_rng(seed)
    lengths = [7, 4, 2]
    ids = np.full((3, 7), pad_id, np.int64)
    mask = np.zeros((3, 7), np.int64)
    tt = np.zeros((3, 7), np.int64)
    for i, n in enumerate(lengths):
        sl = slice(7 - n, 7) if left else slice(0, n)
        ids[i, sl] = rng.integers(3, 100, n)
        mask[i, sl] = 1
        if token_types:
            tt[i, sl] = (np.arange(n) >= n // 2).astype(np.int64)
    return ids, mask, tt


def torch_states(model, ids, mask, tt=None, **kw):
    with torch.no_grad():
        args = dict(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), **kw)
        if tt is not None:
            args["token_type_ids"] = torch.tensor(tt)
        out = model(**args, output_hidden_states=True)
    return [h.numpy() for h in out.hidden_states], out


def jax_states(encoder, ids, mask, tt=None):
    out = encoder(
        jnp.asarray(ids, jnp.int32),
        jnp.asarray(mask, jnp.int32),
        None if tt is None else jnp.asarray(tt, jnp.int32),
    )
    return [np.asarray(h) for h in out.hidden_states]


def assert_states_close(ours, theirs, mask, tol=TOL):
    assert len(ours) == len(theirs)
    real = mask.astype(bool)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        diff = np.abs(a[real] - b[real]).max()
        assert diff <= tol, f"hidden_states[{i}] differs by {diff:.2e} > {tol:.0e}"


def save_tiny(cls, config, tmp_path, seed=0):
    torch.manual_seed(seed)
    model = cls(config).eval()
    model.save_pretrained(tmp_path, safe_serialization=True)
    return model


def test_bert_parity(tmp_path):
    config = transformers.BertConfig(**TINY, type_vocab_size=2)
    ref = save_tiny(transformers.BertModel, config, tmp_path)
    enc, tok, hf_config, path = models.from_pretrained(tmp_path)
    assert tok is None, "a directory without tokenizer files loads with tokenizer=None"
    assert hf_config["model_type"] == "bert" and path == tmp_path
    ids, mask, tt = batch(config.pad_token_id)
    assert_states_close(jax_states(enc, ids, mask, tt), torch_states(ref, ids, mask, tt)[0], mask)


def test_bert_prefixed_checkpoint_loads(tmp_path):
    """Task checkpoints carry a "bert." prefix, a pooler and a classifier; the encoder loads from
    them (the head is for the task heads: tests/test_hf_task_init.py)."""
    config = transformers.BertConfig(**TINY)
    ref = save_tiny(transformers.BertForSequenceClassification, config, tmp_path)
    enc = models.from_pretrained(tmp_path).model
    assert enc.checkpoint == str(tmp_path)
    ids, mask, tt = batch(0)
    theirs = torch_states(ref.bert, ids, mask, tt)[0]
    assert_states_close(jax_states(enc, ids, mask, tt), theirs, mask)


SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Transfer learning reuses what a model learned on one task for another.",
    "It rained.",
    "BERT's feature-based NER experiment concatenated the last four layers.",
    "Paris is the capital of France.",
    "I loved this movie; the acting was superb and the plot kept me guessing!",
    "Padding tokens must never change the outputs at real positions.",
    "ok",
]


def test_minilm_parity_on_real_sentences():
    enc, tok, _, path = models.from_pretrained("minilm")
    assert tok is not None and tok.is_fast
    b = tok(SENTENCES, padding=True, return_tensors="np")
    ref = transformers.AutoModel.from_pretrained(str(path)).eval()
    ours = jax_states(enc, b["input_ids"], b["attention_mask"], b["token_type_ids"])
    theirs = torch_states(ref, b["input_ids"], b["attention_mask"], b["token_type_ids"])[0]
    assert enc.num_layers == 6 and enc.hidden_size == 384
    assert_states_close(ours, theirs, b["attention_mask"], tol=1e-4)


def test_dtype_bfloat16_runs_close(tmp_path):
    """Compute in bf16 (parameters stay fp32): outputs within bf16 precision of fp32."""
    save_tiny(transformers.BertModel, transformers.BertConfig(**TINY), tmp_path)
    enc32 = models.from_pretrained(tmp_path).model
    enc16 = models.from_pretrained(tmp_path, dtype=jnp.bfloat16).model
    assert enc16.layers[0].attention.query.kernel[...].dtype == jnp.float32
    ids, mask, tt = batch(0)
    a = jax_states(enc32, ids, mask, tt)[-1]
    b = enc16(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(tt)).last_hidden_state
    assert b.dtype == jnp.bfloat16
    real = mask.astype(bool)
    # bf16 keeps 8 mantissa bits (~4e-3 relative); a few layers of LayerNorm'd O(1) values
    # stay within a few 1e-2.
    assert np.abs(a[real] - np.asarray(b, np.float32)[real]).max() < 0.1


@pytest.mark.parametrize("cls", ["Roberta", "XLMRoberta", "Camembert", "Data2VecText"])
def test_roberta_parity_left_and_right_padding(tmp_path, cls):
    """XLM-RoBERTa and CamemBERT (their own config classes, model_types "xlm-roberta" and
    "camembert") run RoBERTa's encoder."""
    config = getattr(transformers, f"{cls}Config")(**TINY, type_vocab_size=1, pad_token_id=1)
    ref = save_tiny(getattr(transformers, f"{cls}Model"), config, tmp_path)
    enc = models.from_pretrained(tmp_path).model
    assert enc.family == config.model_type
    # RoBERTa positions skip padding, so left padding must give the same answer as HF's.
    for left in (False, True):
        ids, mask, _ = batch(1, left=left, token_types=False)
        assert_states_close(jax_states(enc, ids, mask), torch_states(ref, ids, mask)[0], mask)


def test_electra_parity_with_embedding_projection(tmp_path):
    config = transformers.ElectraConfig(**TINY, embedding_size=16)
    ref = save_tiny(transformers.ElectraModel, config, tmp_path)
    enc = models.from_pretrained(tmp_path).model
    assert enc.embeddings.project is not None
    ids, mask, tt = batch(0)
    assert_states_close(jax_states(enc, ids, mask, tt), torch_states(ref, ids, mask, tt)[0], mask)


@pytest.mark.parametrize("task_id", [False, True], ids=["ernie", "ernie_task_id"])
def test_ernie_parity_with_and_without_its_task_type_table(tmp_path, task_id):
    """ERNIE is BERT under the "ernie." names, plus (use_task_id) a task-type table whose row 0
    transformers adds to every token when given no task_type_ids."""
    config = transformers.ErnieConfig(**TINY, use_task_id=task_id, task_type_vocab_size=3)
    ref = save_tiny(transformers.ErnieModel, config, tmp_path)
    enc = models.from_pretrained(tmp_path).model
    assert enc.family == "ernie" and (enc.embeddings.task_type is not None) == task_id
    for left in (False, True):
        ids, mask, tt = batch(0, left=left)
        assert_states_close(jax_states(enc, ids, mask, tt), torch_states(ref, ids, mask, tt)[0],
                            mask)  # fmt: skip
    out = models.save_pretrained(enc, tmp_path / "export")
    again = transformers.AutoModel.from_pretrained(str(out)).eval()
    assert again.config.use_task_id == task_id
    ids, mask, tt = batch(0)
    assert_states_close(jax_states(enc, ids, mask, tt), torch_states(again, ids, mask, tt)[0],
                        mask)  # fmt: skip


ARCHITECTURES = {"bert": "BertModel", "roberta": "RobertaModel", "xlm-roberta": "XLMRobertaModel",
                 "camembert": "CamembertModel", "ernie": "ErnieModel"}  # fmt: skip


@pytest.mark.parametrize("family", ["bert", "roberta", "xlm-roberta", "camembert", "ernie"])
def test_export_round_trip_to_transformers(tmp_path, family):
    """jaxtl -> save_pretrained -> transformers.AutoModel: same outputs."""
    hf_config = dict(TINY, num_hidden_layers=2, type_vocab_size=2, pad_token_id=1)
    enc = models.build_encoder(family, hf_config, rngs=nnx.Rngs(7))
    out = models.save_pretrained(enc, tmp_path / "export", hf_config=hf_config)
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == family
    assert config["architectures"] == [ARCHITECTURES[family]]
    ref = transformers.AutoModel.from_pretrained(str(out)).eval()
    assert type(ref).__name__ == ARCHITECTURES[family]
    ids, mask, tt = batch(1)
    theirs = torch_states(ref, ids, mask, tt)[0]
    assert_states_close(jax_states(enc, ids, mask, tt), theirs, mask)
    # and back into jaxtl
    again = models.from_pretrained(out).model
    assert_states_close(jax_states(again, ids, mask, tt), theirs, mask)


def test_export_keeps_tokenizer_and_config_extras(tmp_path):
    enc, tok, hf_config, _ = models.from_pretrained("minilm")
    out = models.save_pretrained(enc, tmp_path / "m", tokenizer=tok, hf_config=hf_config)
    enc2, tok2, config2, _ = models.from_pretrained(out)
    assert tok2 is not None and tok2("hello")["input_ids"] == tok("hello")["input_ids"]
    assert config2["_name_or_path"] == hf_config["_name_or_path"]
    ids, mask, tt = batch(0)
    np.testing.assert_array_equal(jax_states(enc2, ids, mask)[-1], jax_states(enc, ids, mask)[-1])


GPT2_TINY = dict(vocab_size=100, n_embd=32, n_layer=3, n_head=4, n_positions=40)


def gpt2_positions(mask):
    """What jaxtl uses: positions count real tokens (so left padding changes nothing)."""
    return np.maximum(np.cumsum(mask, axis=1) - 1, 0)


def test_gpt2_parity_left_and_right_padding(tmp_path):
    config = transformers.GPT2Config(**GPT2_TINY)
    ref = save_tiny(transformers.GPT2Model, config, tmp_path)
    enc = models.from_pretrained(tmp_path).model
    for left in (False, True):
        ids, mask, _ = batch(0, left=left, token_types=False)
        pos = torch.tensor(gpt2_positions(mask))
        theirs, out = torch_states(ref, ids, mask, position_ids=pos)
        # HF applies ln_f to the last entry of hidden_states; so do we.
        np.testing.assert_allclose(theirs[-1], out.last_hidden_state.numpy(), atol=0)
        assert_states_close(jax_states(enc, ids, mask), theirs, mask)
    # Right padding: identical to HF's default arange positions as well.
    ids, mask, _ = batch(0, token_types=False)
    right = jax_states(enc, ids, mask)
    assert_states_close(right, torch_states(ref, ids, mask)[0], mask)
    # Left padding gives the same real-token outputs as right padding, and no NaN in pad rows.
    lids, lmask, _ = batch(0, left=True, token_types=False)
    left = jax_states(enc, lids, lmask)[-1]
    assert np.isfinite(left).all(), "padding rows must not produce NaN"
    np.testing.assert_allclose(left[lmask.astype(bool)], right[-1][mask.astype(bool)], atol=TOL)


def test_gpt2_export_round_trip(tmp_path):
    enc = models.build_encoder("gpt2", GPT2_TINY, rngs=nnx.Rngs(3))
    out = models.save_pretrained(enc, tmp_path / "gpt2")
    ref = transformers.AutoModel.from_pretrained(str(out)).eval()
    assert type(ref).__name__ == "GPT2Model"
    ids, mask, _ = batch(0, token_types=False)
    assert_states_close(jax_states(enc, ids, mask), torch_states(ref, ids, mask)[0], mask)


def test_bert_mlm_head_matches_bert_for_masked_lm(tmp_path):
    config = transformers.BertConfig(**TINY)
    ref = save_tiny(transformers.BertForMaskedLM, config, tmp_path)
    model = models.from_pretrained(tmp_path, load_lm_head=True).model
    assert isinstance(model.heads["lm"], models.MLMHead)
    ids, mask, tt = batch(0)
    _, feats = model.features(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(tt))
    ours = np.asarray(model.heads["lm"](feats, model.encoder.tied_embedding()))
    with torch.no_grad():
        theirs = ref(
            input_ids=torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            token_type_ids=torch.tensor(tt),
        ).logits.numpy()
    real = mask.astype(bool)
    assert np.abs(ours[real] - theirs[real]).max() <= TOL
    # export with the head: BertForMaskedLM reloads with the same logits
    out = models.save_pretrained(model, tmp_path / "export")
    again = transformers.AutoModelForMaskedLM.from_pretrained(str(out)).eval()
    with torch.no_grad():
        theirs2 = again(
            input_ids=torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            token_type_ids=torch.tensor(tt),
        ).logits.numpy()
    assert np.abs(ours[real] - theirs2[real]).max() <= TOL


def mlm_logits(ref, ids, mask):
    with torch.no_grad():
        return ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()


@pytest.mark.parametrize("cls", ["Roberta", "XLMRoberta", "Camembert", "Data2VecText"])
def test_roberta_mlm_head_matches(tmp_path, cls):
    config = getattr(transformers, f"{cls}Config")(**TINY, type_vocab_size=1, pad_token_id=1)
    ref = save_tiny(getattr(transformers, f"{cls}ForMaskedLM"), config, tmp_path)
    model = models.from_pretrained(tmp_path, load_lm_head=True).model
    ids, mask, _ = batch(1, token_types=False)
    _, feats = model.features(jnp.asarray(ids), jnp.asarray(mask))
    ours = np.asarray(model.heads["lm"](feats, model.encoder.tied_embedding()))
    real = mask.astype(bool)
    assert np.abs(ours[real] - mlm_logits(ref, ids, mask)[real]).max() <= TOL
    if cls != "Roberta":  # export with the head: XLMRobertaForMaskedLM (...) reloads
        out = models.save_pretrained(model, tmp_path / "export")
        again = transformers.AutoModelForMaskedLM.from_pretrained(str(out)).eval()
        assert type(again).__name__ == f"{cls}ForMaskedLM"
        assert np.abs(ours[real] - mlm_logits(again, ids, mask)[real]).max() <= TOL


# --- DistilBERT: BERT's encoder under other names, no token types ------------------------------

DISTIL_TINY = dict(vocab_size=100, dim=32, n_layers=3, n_heads=4, hidden_dim=64,
                   max_position_embeddings=40)  # fmt: skip


def jitter(model, seed=1, scale=0.05):
    """Noise on every parameter: freshly initialised biases and LayerNorms are 0 / 1, which would
    hide a tensor mapped to the wrong place."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model


def save_jittered(cls, config, path):
    torch.manual_seed(0)
    model = jitter(cls(config)).eval()
    model.save_pretrained(path, safe_serialization=True)
    return model


@pytest.mark.parametrize("sinusoidal,act", [(False, "gelu"), (True, "relu")])
def test_distilbert_parity_ignores_token_types(tmp_path, sinusoidal, act):
    config = transformers.DistilBertConfig(**DISTIL_TINY, sinusoidal_pos_embds=sinusoidal,
                                           activation=act)  # fmt: skip
    ref = save_jittered(transformers.DistilBertModel, config, tmp_path)
    enc = models.from_pretrained(tmp_path).model
    assert enc.family == "distilbert" and enc.embeddings.token_type is None
    assert enc.cfg.sinusoidal_positions is sinusoidal and enc.cfg.hidden_act == act
    ids, mask, tt = batch(0)  # non-zero token types: accepted and dropped
    theirs = torch_states(ref, ids, mask)[0]
    assert_states_close(jax_states(enc, ids, mask, tt), theirs, mask)
    assert_states_close(jax_states(enc, ids, mask), theirs, mask)


def test_distilbert_export_round_trip_with_sinusoidal_positions(tmp_path):
    hf_config = dict(DISTIL_TINY, n_layers=2, sinusoidal_pos_embds=True)
    enc = models.build_encoder("distilbert", hf_config, rngs=nnx.Rngs(7))
    # A fresh encoder's position table is transformers' own sinusoidal initialisation.
    fresh = transformers.DistilBertModel(transformers.DistilBertConfig(**hf_config))
    table = fresh.embeddings.position_embeddings.weight.detach().numpy()
    np.testing.assert_allclose(np.asarray(enc.embeddings.position.embedding[...]), table, atol=1e-7)
    out = models.save_pretrained(enc, tmp_path / "export", hf_config=hf_config)
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "distilbert" and config["architectures"] == ["DistilBertModel"]
    assert config["dim"] == 32 and config["sinusoidal_pos_embds"] is True
    ref = transformers.AutoModel.from_pretrained(str(out)).eval()
    assert type(ref).__name__ == "DistilBertModel"
    ids, mask, _ = batch(0, token_types=False)
    theirs = torch_states(ref, ids, mask)[0]
    assert_states_close(jax_states(enc, ids, mask), theirs, mask)
    again = models.from_pretrained(out).model
    assert again.cfg == enc.cfg
    assert_states_close(jax_states(again, ids, mask), theirs, mask)


def test_distilbert_mlm_head_matches_and_exports(tmp_path):
    config = transformers.DistilBertConfig(**DISTIL_TINY)
    ref = save_jittered(transformers.DistilBertForMaskedLM, config, tmp_path)
    model = models.from_pretrained(tmp_path, load_lm_head=True).model
    assert isinstance(model.heads["lm"], models.MLMHead)
    ids, mask, _ = batch(0, token_types=False)
    _, feats = model.features(jnp.asarray(ids), jnp.asarray(mask))
    ours = np.asarray(model.heads["lm"](feats, model.encoder.tied_embedding()))
    real = mask.astype(bool)
    assert np.abs(ours[real] - mlm_logits(ref, ids, mask)[real]).max() <= TOL
    out = models.save_pretrained(model, tmp_path / "export")
    assert json.loads((out / "config.json").read_text())["architectures"] == [
        "DistilBertForMaskedLM"
    ]
    again = transformers.AutoModelForMaskedLM.from_pretrained(str(out)).eval()
    assert type(again).__name__ == "DistilBertForMaskedLM"
    assert np.abs(ours[real] - mlm_logits(again, ids, mask)[real]).max() <= TOL
    # Without load_lm_head the MLM head's tensors are known and skipped.
    assert models.from_pretrained(tmp_path).model.family == "distilbert"


def test_gpt2_clm_head_matches_lm_head_model(tmp_path):
    config = transformers.GPT2Config(**GPT2_TINY)
    ref = save_tiny(transformers.GPT2LMHeadModel, config, tmp_path)
    model = models.from_pretrained(tmp_path, load_lm_head=True).model
    assert isinstance(model.heads["lm"], models.CLMHead)
    ids, mask, _ = batch(0, token_types=False)
    _, feats = model.features(jnp.asarray(ids), jnp.asarray(mask))
    ours = np.asarray(model.heads["lm"](feats, model.encoder.tied_embedding()))
    with torch.no_grad():
        theirs = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits
    real = mask.astype(bool)
    assert np.abs(ours[real] - theirs.numpy()[real]).max() <= TOL
    out = models.save_pretrained(model, tmp_path / "export")
    assert json.loads((out / "config.json").read_text())["architectures"] == ["GPT2LMHeadModel"]
    again = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval()
    with torch.no_grad():
        theirs2 = again(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits
    assert np.abs(ours[real] - theirs2.numpy()[real]).max() <= TOL


def test_bilstm_save_load_identical(tmp_path):
    cfg = models.BiLSTMConfig(vocab_size=50, embed_size=12, hidden_size=8, num_layers=2)
    enc = models.BiLSTMEncoder(cfg, rngs=nnx.Rngs(0))
    out = models.save_pretrained(enc, tmp_path / "bilstm")
    assert json.loads((out / "config.json").read_text())["model_type"] == "jaxtl_bilstm"
    loaded, tok, _, _ = models.from_pretrained(out)
    assert tok is None and loaded.cfg == cfg
    ids, mask, _ = batch(0, token_types=False)
    ids = ids % 50
    for a, b in zip(jax_states(enc, ids, mask), jax_states(loaded, ids, mask)):
        np.testing.assert_array_equal(a, b)
