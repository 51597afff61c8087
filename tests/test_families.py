"""XLM-RoBERTa and DistilBERT beyond layer parity (tests/test_hf_parity.py) and task-model export
(tests/test_export.py): config errors, task checkpoints, sharding names, bf16, and one
in-process multitask run each on a tiny model with a real tokenizer of its own kind."""

from __future__ import annotations

import json
import shutil
import string

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch", reason="transformers (torch) is the reference")
transformers = pytest.importorskip("transformers")

from conftest import minilm_dir, small_config  # noqa: E402
from test_hf_parity import batch, jax_states, jitter, torch_states  # noqa: E402

from jaxtl import assembly, mesh, models  # noqa: E402
from jaxtl import config as config_lib  # noqa: E402
from jaxtl.data.prepare import TaskData  # noqa: E402
from jaxtl.data.tasks import Task  # noqa: E402
from jaxtl.regimes import multitask  # noqa: E402

DISTIL = dict(vocab_size=100, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
              max_position_embeddings=40)  # fmt: skip
XLMR = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=40, type_vocab_size=1,
            pad_token_id=1)  # fmt: skip
NLI = ("entailment", "neutral", "contradiction")


@pytest.mark.parametrize(
    "edit,message",
    [
        ({"activation": "quick_gelu"}, "unsupported config attribute activation='quick_gelu'"),
        ({"dim": 30}, "dim=30 is not divisible by n_heads=4"),
        ({"is_decoder": True}, "unsupported config attribute is_decoder=True"),
        ({"dim": None}, "lacks required attribute 'dim'"),
    ],
)
def test_distilbert_config_errors_name_the_attribute(edit, message):
    hf_config = {k: v for k, v in {**DISTIL, **edit}.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        models.build_encoder("distilbert", hf_config, rngs=nnx.Rngs(0))


def test_distilbert_task_checkpoint_loads_and_its_head_is_reused(tmp_path):
    """A DistilBertForSequenceClassification checkpoint ("distilbert." prefix, pre_classifier,
    classifier): the encoder loads from it and the default head *is* its head."""
    cfg = transformers.DistilBertConfig(**DISTIL, id2label=dict(enumerate(NLI)))
    torch.manual_seed(0)
    ref = jitter(transformers.DistilBertForSequenceClassification(cfg)).eval()
    ref.save_pretrained(tmp_path)
    enc = models.from_pretrained(tmp_path).model
    td = TaskData(Task("toy/nli", "classification", loader=None, label_names=NLI), 0, "toy_nli",
                  0, None, [], "dev")  # fmt: skip
    model = assembly.build_model(enc, [td], config_lib.base_config())
    entry = model.init_report.to_json()["tasks"]["toy/nli"]
    assert entry["classifier"] == "reused", entry
    ids, mask, tt = batch(0)
    _, feats = model.features(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(tt))
    ours = np.asarray(model.heads["toy_nli"](feats, jnp.asarray(mask)))
    with torch.no_grad():
        theirs = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits
    assert np.abs(ours - theirs.numpy()).max() <= 1e-5


@pytest.mark.parametrize(
    "family,hf_config,like",
    [("distilbert", DISTIL, "bert"), ("xlm-roberta", XLMR, "roberta")],
)
def test_parameter_paths_and_logical_axes_are_the_bert_encoders(family, hf_config, like):
    """Same parameter paths and logical sharding names as the BERT / RoBERTa encoder (DistilBERT
    has no token-type table), so partition rules, LoRA targets and the mesh apply unchanged."""

    def names(enc):
        return mesh.logical_specs(nnx.state(enc, nnx.Param))

    ours = names(models.build_encoder(family, hf_config, rngs=nnx.Rngs(0)))
    bert_config = {**XLMR, "type_vocab_size": 2 if family == "distilbert" else 1}
    theirs = names(models.build_encoder(like, bert_config, rngs=nnx.Rngs(0)))
    if family == "distilbert":
        theirs.pop("embeddings/token_type/embedding")
    assert ours == theirs
    assert ours["layers/0/attention/query/kernel"] == ("embed", "heads")
    assert all(ours.values()), "every parameter carries logical axis names"


@pytest.mark.parametrize("family", ["distilbert", "xlm-roberta"])
def test_bfloat16_compute(tmp_path, family):
    hf_config = DISTIL if family == "distilbert" else XLMR
    enc = models.build_encoder(family, hf_config, rngs=nnx.Rngs(1))
    models.save_pretrained(enc, tmp_path, hf_config=hf_config)
    enc16 = models.from_pretrained(tmp_path, dtype=jnp.bfloat16).model
    assert enc16.layers[0].attention.query.kernel[...].dtype == jnp.float32
    ids, mask, tt = batch(hf_config.get("pad_token_id", 0))
    a = jax_states(enc, ids, mask, tt)
    out = enc16(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(tt))
    assert len(out.hidden_states) == len(a) == 3
    assert all(h.dtype == jnp.bfloat16 for h in out.hidden_states)
    real = mask.astype(bool)
    b = np.asarray(out.last_hidden_state, np.float32)
    assert np.abs(a[-1][real] - b[real]).max() < 0.1


def test_xlm_roberta_sentencepiece_tokenizer_round_trip(tmp_path):
    """The tiny model dir's XLM-R tokenizer (built offline, see xlmr_dir) loads back as one."""
    path = xlmr_dir(tmp_path)
    pre = models.from_pretrained(path)
    tok = pre.tokenizer
    assert type(tok).__name__ == "XLMRobertaTokenizer" and tok.is_fast
    assert (tok.cls_token_id, tok.pad_token_id, tok.sep_token_id) == (0, 1, 2)
    ref = transformers.AutoModel.from_pretrained(str(path)).eval()
    b = tok(["Alice met Bob in Paris.", "ok"], padding=True, return_tensors="np")
    theirs = torch_states(ref, b["input_ids"], b["attention_mask"])[0]
    ours = jax_states(pre.model, b["input_ids"], b["attention_mask"])
    real = b["attention_mask"].astype(bool)
    assert max(np.abs(x[real] - y[real]).max() for x, y in zip(ours, theirs)) <= 1e-5


# --- one multitask run per family --------------------------------------------------------------


def xlmr_dir(path):
    """A tiny XLM-R with a real XLMRobertaTokenizer (SentencePiece-style Unigram, fast) built
    offline over characters: <s> <pad> </s> <unk>, "▁", printable characters, <mask> last."""
    pieces = ["▁"] + [c for c in string.printable if not c.isspace()]
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(p, -1.0) for p in pieces] + [("<mask>", 0.0)]
    tok = transformers.XLMRobertaTokenizer(vocab=vocab)
    hf_config = dict(XLMR, vocab_size=len(vocab), max_position_embeddings=64)
    enc = models.build_encoder("xlm-roberta", hf_config, rngs=nnx.Rngs(0))
    models.save_pretrained(enc, path, tokenizer=tok, hf_config=hf_config)
    return path


def distilbert_dir(path):
    """A tiny DistilBERT with MiniLM's (BERT WordPiece) tokenizer: vocab 30522."""
    hf_config = dict(DISTIL, vocab_size=30522, max_position_embeddings=512)
    enc = models.build_encoder("distilbert", hf_config, rngs=nnx.Rngs(0))
    models.save_pretrained(enc, path, hf_config=hf_config)
    src = minilm_dir()
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (src / f).exists():
            shutil.copy(src / f, path / f)
    return path


@pytest.mark.parametrize("family", ["distilbert", "xlm-roberta"])
def test_multitask_smoke(tmp_path, family):
    model_dir = (distilbert_dir if family == "distilbert" else xlmr_dir)(tmp_path / "model")
    c = multitask.add_config(config_lib.base_config())
    c.tasks.names = ("builtin/sentiment", "builtin/ner")
    # max_length 32 too: the XLM-R tokenizer here is character-level, so sentences run long.
    # FSDP over the 8 fake CPU devices (data 4 x fsdp 2): parameters and moments sharded.
    c = small_config(c, model_dir, **{"train.steps": 3, "data.max_length": 32, "mesh.fsdp": 2})
    multitask.run(c, str(tmp_path / "work"))
    results = json.loads((tmp_path / "work" / "results.json").read_text())
    assert {"builtin/sentiment", "builtin/ner"} <= set(results), results
    assert all(np.isfinite(v) for r in results.values() if isinstance(r, dict)
               for v in r.values() if isinstance(v, float))  # fmt: skip
