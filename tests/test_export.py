"""Trained jaxtl models load in transformers and PEFT with the logits jaxtl computes.

Tiny random HF encoders are built with torch and loaded into jaxtl; the default (``model.head=
auto``) heads are built, every parameter is randomly perturbed (as a few training steps would),
and the export is reloaded with ``AutoModelFor{Sequence,Token}Classification`` /
``peft.PeftModel``. Logits are compared on a right-padded batch (real tokens only for tagging):
max abs difference <= 1e-4 (fp32; observed ~1e-6).
"""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch", reason="transformers (torch) is the reference")
transformers = pytest.importorskip("transformers")

from jaxtl import assembly, export, models, paths, peft  # noqa: E402
from jaxtl import config as config_lib  # noqa: E402
from jaxtl.data.prepare import TaskData  # noqa: E402
from jaxtl.data.tasks import Task  # noqa: E402

TOL = 1e-4
TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=40)  # fmt: skip
PAD = {"bert": 0, "roberta": 1, "xlm-roberta": 1, "camembert": 1, "electra": 0, "distilbert": 0,
       "gpt2": 0, "ernie": 0, "data2vec-text": 1}  # fmt: skip
ARCH = {"bert": "Bert", "roberta": "Roberta", "xlm-roberta": "XLMRoberta", "camembert": "Camembert",
        "electra": "Electra", "distilbert": "DistilBert", "gpt2": "GPT2", "ernie": "Ernie",
        "data2vec-text": "Data2VecText"}  # fmt: skip
NLI = ("entailment", "neutral", "contradiction")
TAGS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")


def hf_base(family: str, path: pathlib.Path) -> pathlib.Path:
    """A tiny random bare HF encoder of ``family`` saved at ``path``."""
    torch.manual_seed(0)
    if family == "bert":
        model = transformers.BertModel(transformers.BertConfig(**TINY))
    elif family == "ernie":  # ERNIE 3.0's layout: a task-type table
        cfg = transformers.ErnieConfig(**TINY, use_task_id=True, task_type_vocab_size=3)
        model = transformers.ErnieModel(cfg)
    elif family in ("roberta", "xlm-roberta", "camembert", "data2vec-text"):
        cls = ARCH[family]
        cfg = getattr(transformers, f"{cls}Config")(**TINY, type_vocab_size=1, pad_token_id=1)
        model = getattr(transformers, f"{cls}Model")(cfg)
    elif family == "distilbert":
        cfg = transformers.DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=4,
                                            hidden_dim=64, max_position_embeddings=40)  # fmt: skip
        model = transformers.DistilBertModel(cfg)
    elif family == "electra":
        model = transformers.ElectraModel(transformers.ElectraConfig(**TINY, embedding_size=16))
    else:
        cfg = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4,
                                      n_positions=40)  # fmt: skip
        model = transformers.GPT2Model(cfg)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def base_dirs(tmp_path_factory):
    cache: dict[str, pathlib.Path] = {}

    def get(family: str) -> pathlib.Path:
        if family not in cache:
            cache[family] = hf_base(family, tmp_path_factory.mktemp(family))
        return cache[family]

    return get


def task(kind: str, labels=(), name: str | None = None, index: int = 0) -> TaskData:
    name = name or f"toy/{kind}"
    t = Task(name, kind, loader=None, label_names=tuple(labels))
    return TaskData(t, index, name.replace("/", "_"), 0, None, [], "dev")


def config(**model):
    c = config_lib.base_config()
    c.model.update(model)
    return c


def build(path, tds, c=None):
    enc, tok, hf_config, _ = models.from_pretrained(path)
    return assembly.build_model(enc, tds, c or config()), tok, hf_config


def perturbed(model, seed: int = 1, scale: float = 0.05, where=lambda p: True) -> dict:
    """The model's params with Gaussian noise added (where ``where(path)``), as a pure dict."""
    flat = paths.flatten(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    key = jax.random.key(seed)
    for p in sorted(flat):
        if where(p):
            key, sub = jax.random.split(key)
            flat[p] = flat[p] + scale * jax.random.normal(sub, flat[p].shape, flat[p].dtype)
    return paths.unflatten(flat, nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def padded(family: str, seed: int = 0):
    """Right-padded batch: lengths 7, 4, 2 (ids 3..99, never the pad id)."""
    rng = np.random.default_rng(seed)
    ids = np.full((3, 7), PAD[family], np.int64)
    mask = np.zeros((3, 7), np.int64)
    for i, n in enumerate([7, 4, 2]):
        ids[i, :n] = rng.integers(3, 100, n)
        mask[i, :n] = 1
    tt = (np.arange(7)[None] >= 3).astype(np.int64) * mask
    return ids, mask, (tt if family in ("bert", "electra", "ernie") else None)


def jaxtl_logits(model, params, key, ids, mask, tt):
    m = export.with_params(model, params)
    tt = None if tt is None else jnp.asarray(tt)
    _, feats = m.features(jnp.asarray(ids), jnp.asarray(mask), tt)
    return np.asarray(m.heads[key](feats, jnp.asarray(mask)))


def hf_logits(model, ids, mask, tt):
    args = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
    if tt is not None:
        args["token_type_ids"] = torch.tensor(tt)
    with torch.no_grad():
        return model.eval()(**args).logits.numpy()


def max_diff(a, b, mask=None):
    if mask is not None:
        a, b = a[mask.astype(bool)], b[mask.astype(bool)]
    return float(np.abs(a - b).max())


@pytest.mark.parametrize("family", ["bert", "roberta", "xlm-roberta", "camembert", "electra",
                                    "distilbert", "gpt2", "ernie", "data2vec-text"])  # fmt: skip
def test_sequence_classification_export_matches_transformers(base_dirs, tmp_path, family):
    td = task("classification", NLI)
    model, tok, hf_config = build(base_dirs(family), [td])
    params = perturbed(model)
    rep = export.export_task_model(model, params, td, tmp_path / "out", tokenizer=tok,
                                   hf_config=hf_config, family=family,
                                   description="perturbed for a test")  # fmt: skip
    assert rep["format"] == "transformers" and rep["reason"] is None
    assert rep["architecture"] == f"{ARCH[family]}ForSequenceClassification"
    assert {"config.json", "model.safetensors", "README.md"} <= set(rep["files"])
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    assert type(hf).__name__ == rep["architecture"]
    assert hf.config.id2label == dict(enumerate(NLI))
    assert hf.config.problem_type == "single_label_classification"
    if family != "gpt2":  # the head's dropout, under the attribute the transformers head reads
        written = json.loads((tmp_path / "out" / "config.json").read_text())
        attr = "seq_classif_dropout" if family == "distilbert" else "classifier_dropout"
        assert written[attr] == model.heads[td.key].dropout
    ids, mask, tt = padded(family)
    ours = jaxtl_logits(model, params, td.key, ids, mask, tt)
    assert max_diff(ours, hf_logits(hf, ids, mask, tt)) <= TOL
    card = (tmp_path / "out" / "README.md").read_text()
    assert "perturbed for a test" in card and "contradiction" in card


@pytest.mark.parametrize("family", ["bert", "xlm-roberta", "camembert", "distilbert", "gpt2",
                                    "ernie"])  # fmt: skip
def test_tagging_export_matches_transformers(base_dirs, tmp_path, family):
    td = task("tagging", TAGS)
    model, tok, hf_config = build(base_dirs(family), [td])
    params = perturbed(model, seed=2)
    rep = export.export_task_model(model, params, td, tmp_path / "out", hf_config=hf_config)
    assert rep["format"] == "transformers"
    hf = transformers.AutoModelForTokenClassification.from_pretrained(tmp_path / "out")
    assert type(hf).__name__ == f"{ARCH[family]}ForTokenClassification"
    assert hf.config.id2label == dict(enumerate(TAGS))
    ids, mask, tt = padded(family)
    ours = jaxtl_logits(model, params, td.key, ids, mask, tt)
    assert max_diff(ours, hf_logits(hf, ids, mask, tt), mask) <= TOL


@pytest.mark.parametrize("family", ["bert", "roberta", "camembert", "electra", "distilbert",
                                    "gpt2", "ernie", "data2vec-text"])  # fmt: skip
def test_qa_export_matches_transformers(base_dirs, tmp_path, family):
    """A qa head exports as *ForQuestionAnswering (qa_outputs): its start and end logits are
    jaxtl's two per-token outputs, and load_task_model reads the folder back as a qa model."""
    td = task("qa")
    model, tok, hf_config = build(base_dirs(family), [td])
    params = perturbed(model, seed=3)
    rep = export.export_task_model(model, params, td, tmp_path / "out", hf_config=hf_config)
    assert rep["format"] == "transformers" and rep["reason"] is None
    hf = transformers.AutoModelForQuestionAnswering.from_pretrained(tmp_path / "out")
    assert type(hf).__name__ == f"{ARCH[family]}ForQuestionAnswering"
    ids, mask, tt = padded(family)
    ours = jaxtl_logits(model, params, td.key, ids, mask, tt)
    args = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
    if tt is not None:
        args["token_type_ids"] = torch.tensor(tt)
    with torch.no_grad():
        got = hf.eval()(**args)
    assert max_diff(ours[..., 0], got.start_logits.numpy(), mask) <= TOL
    assert max_diff(ours[..., 1], got.end_logits.numpy(), mask) <= TOL
    back, key, info = export.load_task_model(tmp_path / "out")
    assert info["kind"] == "qa"
    again = jaxtl_logits(back, None, key, ids, mask, tt)
    assert max_diff(ours, again, mask) <= TOL


def test_regression_export(base_dirs, tmp_path):
    td = task("regression")
    model, _, hf_config = build(base_dirs("roberta"), [td])
    params = perturbed(model, seed=3)
    export.export_task_model(model, params, td, tmp_path / "out", hf_config=hf_config)
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    assert hf.config.num_labels == 1 and hf.config.problem_type == "regression"
    ids, mask, tt = padded("roberta")
    ours = jaxtl_logits(model, params, td.key, ids, mask, tt)
    assert ours.shape == (3, 1)
    assert max_diff(ours, hf_logits(hf, ids, mask, tt)) <= TOL


@pytest.mark.parametrize("family", ["bert", "camembert", "gpt2"])
def test_lora_model_merged_export_and_peft_adapter(base_dirs, tmp_path, family):
    peft_lib = pytest.importorskip("peft")
    base = base_dirs(family)
    td = task("classification", NLI)
    c = config()
    c.optim.strategy = "lora"
    c.optim.lora_rank, c.optim.lora_alpha, c.optim.lora_mlp = 4, 8.0, True
    model, _, hf_config = build(base, [td], c)
    assert peft.has_lora(model)
    # What LoRA training changes: the factors and the head (the base encoder stays frozen).
    params = perturbed(model, seed=4, where=lambda p: "lora_" in p or p.startswith("heads/"))
    ids, mask, tt = padded(family)
    ours = jaxtl_logits(model, params, td.key, ids, mask, tt)
    plain = jaxtl_logits(model, perturbed(model, seed=4, where=lambda p: p.startswith("heads/")),
                         td.key, ids, mask, tt)  # fmt: skip
    assert max_diff(ours, plain) > 1e-3, "the LoRA factors must matter"

    export.export_task_model(model, params, td, tmp_path / "merged", hf_config=hf_config)
    merged = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged")
    assert max_diff(ours, hf_logits(merged, ids, mask, tt)) <= TOL

    rep = export.export_peft_adapter(model, params, td, tmp_path / "adapter",
                                     base_hf_config=hf_config, base_dir=base)  # fmt: skip
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["task_type"] == "SEQ_CLS"
    assert cfg["r"] == 4 and cfg["lora_alpha"] == 8.0
    if family != "gpt2":
        assert cfg["target_modules"] == ["attention.output.dense", "attention.self.key",
                                         "attention.self.query", "attention.self.value",
                                         "intermediate.dense", "output.dense"]  # fmt: skip
        # BERT's head: its pooler and classifier; CamemBERT's (RoBERTa's): classifier.{dense,
        # out_proj}
        saved = ["classifier", "pooler"] if family == "bert" else ["classifier"]
        assert cfg["modules_to_save"] == saved
    else:
        assert cfg["target_modules"] == ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]
        assert cfg["modules_to_save"] == ["score"] and cfg["fan_in_fan_out"] is True
    hf_base_model = transformers.AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=3, pad_token_id=PAD[family]
    )
    loaded = peft_lib.PeftModel.from_pretrained(hf_base_model, tmp_path / "adapter")
    assert max_diff(ours, hf_logits(loaded, ids, mask, tt)) <= TOL
    assert rep["tensors"] == (2 * 4 * 2 + 1 if family == "gpt2" else 2 * 6 * 2 + 4)
    # The card names the Hub model a run named, beside the local copy the config points at.
    export.export_peft_adapter(model, params, td, tmp_path / "named", base_dir=base,
                               base_model="minilm")  # fmt: skip
    card = (tmp_path / "named" / "README.md").read_text()
    assert 'base_model: "sentence-transformers/all-MiniLM-L6-v2"' in card.split("---")[1]
    assert f"`{base}` (on the Hub: `sentence-transformers/all-MiniLM-L6-v2`)" in card

    # An encoder whose base weights were trained too: the adapter would be wrong, so no adapter.
    moved = perturbed(model, seed=5, where=lambda p: p.endswith("layers/0/mlp/output/bias"))
    with pytest.raises(ValueError, match="base weights differ"):
        export.export_peft_adapter(model, moved, td, tmp_path / "no", base_dir=base)


@pytest.mark.parametrize("variant", ["bilstm_tagger", "scalar_mix", "linear_mean", "adapters"])
def test_heads_without_a_transformers_class_export_in_jaxtl_format(base_dirs, tmp_path, variant):
    c = config()
    td = task("classification", NLI)
    if variant == "bilstm_tagger":
        td, c.model.tagger_bilstm = task("tagging", TAGS), 4
    elif variant == "scalar_mix":
        c.model.representation = "scalar_mix"
    elif variant == "linear_mean":
        c.model.head, c.model.pooling, c.model.head_hidden = "linear", "mean", 16
    else:
        c.optim.strategy, c.optim.adapter_size = "adapters", 4
    model, _, hf_config = build(base_dirs("bert"), [td], c)
    params = perturbed(model, seed=6)
    out = tmp_path / "out"
    rep = export.export_task_model(model, params, td, out, hf_config=hf_config)
    assert rep["format"] == "jaxtl" and rep["architecture"] is None
    why = {"bilstm_tagger": "BiLSTM", "scalar_mix": "representation", "linear_mean": "pooling",
           "adapters": "Houlsby"}[variant]  # fmt: skip
    assert why in rep["reason"]
    assert {"config.json", "model.safetensors", "jaxtl_head.safetensors", "jaxtl_head.json",
            "EXPORT.md", "README.md"} <= set(rep["files"])  # fmt: skip
    assert "transformers cannot load" in (out / "EXPORT.md").read_text()
    assert "transformers cannot load the head" in (out / "README.md").read_text()
    ids, mask, tt = padded("bert")
    ours = jaxtl_logits(model, params, td.key, ids, mask, tt)
    again, key, info = export.load_task_model(out)
    assert info["labels"] == list(td.task.label_names)
    theirs = np.asarray(
        again.heads[key](
            again.features(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(tt))[1],
            jnp.asarray(mask),
        )
    )
    assert max_diff(ours, theirs, mask if td.task.kind == "tagging" else None) <= 1e-5
    if variant != "adapters":  # the encoder itself is exact in transformers
        enc = export.with_params(model, params).encoder
        hf = transformers.AutoModel.from_pretrained(out).eval()
        with torch.no_grad():
            h = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                   token_type_ids=torch.tensor(tt)).last_hidden_state.numpy()  # fmt: skip
        e = np.asarray(enc(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(tt)).last_hidden_state)
        assert max_diff(e, h, mask) <= TOL


SENTENCES = ["the film was wonderful", "a dull, slow and tiring plot", "it rained in Paris"]


def test_pipeline_labels_equal_jaxtl_argmax(tiny_bert_dir, tmp_path):
    td = task("classification", NLI, name="toy/nli")
    model, tok, hf_config = build(tiny_bert_dir, [td])
    params = perturbed(model, seed=7, scale=0.5, where=lambda p: p.startswith("heads/"))
    export.export_task_model(model, params, td, tmp_path / "nli", tokenizer=tok,
                             hf_config=hf_config)  # fmt: skip
    b = tok(SENTENCES, padding=True, return_tensors="np")
    ours = jaxtl_logits(model, params, td.key, b["input_ids"], b["attention_mask"],
                        b["token_type_ids"])  # fmt: skip
    pipe = transformers.pipeline("text-classification", model=str(tmp_path / "nli"))
    assert [r["label"] for r in pipe(SENTENCES)] == [NLI[i] for i in ours.argmax(-1)]


def test_export_run_writes_encoder_task_models_and_adapters(tiny_bert_dir, tmp_path):
    pytest.importorskip("peft")
    from jaxtl.run import Run

    c = config(name=str(tiny_bert_dir))
    c.optim.strategy, c.optim.lora_rank = "lora", 2
    tds = [task("classification", NLI, "toy/nli", 0), task("tagging", TAGS, "toy/ner", 1)]
    model, tok, hf_config = build(tiny_bert_dir, tds, c)
    params = perturbed(model, seed=8, where=lambda p: "lora_" in p or p.startswith("heads/"))
    run = Run(c, tmp_path / "work", None, model, tok, hf_config, tds, None, params)
    out = tmp_path / "export"
    rep = export.export_run(run, params, out)
    assert rep["(encoder)"]["lora_merged"] is True
    assert type(transformers.AutoModel.from_pretrained(out)).__name__ == "BertModel"
    seq = transformers.AutoModelForSequenceClassification.from_pretrained(out / "toy/nli")
    assert seq.config.id2label == dict(enumerate(NLI))
    tagger = transformers.AutoModelForTokenClassification.from_pretrained(out / "toy/ner")
    assert tagger.config.id2label == dict(enumerate(TAGS))
    for name in ("toy/nli", "toy/ner"):
        assert rep[name]["format"] == "transformers"
        assert (out / name / "tokenizer.json").is_file()
        assert (out / name / "adapter" / "adapter_config.json").is_file()
        assert rep[name]["adapter"]["path"] == str(out / name / "adapter")
    cfg = json.loads((out / "toy/ner/adapter/adapter_config.json").read_text())
    assert cfg["task_type"] == "TOKEN_CLS" and cfg["base_model_name_or_path"] == str(tiny_bert_dir)
    assert "toy/ner (tagging)" in (out / "toy/nli" / "README.md").read_text()
    # A local folder is no Hub id: the cards name it in their text, not as base_model metadata.
    for card in (out / "toy/ner/README.md", out / "toy/ner/adapter/README.md"):
        front = card.read_text().split("---")[1]
        assert "library_name:" in front and "base_model" not in front
        assert str(tiny_bert_dir) in card.read_text() and "on the Hub" not in card.read_text()
    assert 'aggregation_strategy="first"' in (out / "toy/ner/README.md").read_text()


def test_card_base_model_metadata_names_hub_ids_only(tmp_path):
    assert export.card_base_model("minilm") == "sentence-transformers/all-MiniLM-L6-v2"
    assert export.card_base_model("bert-base-uncased") == "bert-base-uncased"
    assert export.card_base_model("FacebookAI/roberta-base") == "FacebookAI/roberta-base"
    (tmp_path / "my-model").mkdir()
    assert export.card_base_model(str(tmp_path / "my-model")) is None  # a local folder
    assert export.card_base_model("a/b/c") is None and export.card_base_model("") is None
    assert export.card_base_model(None) is None


def test_plain_tag_card_says_the_pipeline_groups_neighbours(base_dirs, tmp_path):
    t = Task("toy/pos", "tagging", loader=None, label_names=("DET", "NOUN", "VERB"), iob=False)
    td = TaskData(t, 0, "toy_pos", 0, None, [], "dev")  # POS-like tags, not IOB
    model, tok, hf_config = build(base_dirs("bert"), [td])
    export.export_task_model(model, None, td, tmp_path / "out", hf_config=hf_config,
                             base_model="minilm")  # fmt: skip
    card = (tmp_path / "out" / "README.md").read_text()
    assert 'aggregation_strategy="first"' in card and "These tags are not IOB" in card
    assert 'base_model: "sentence-transformers/all-MiniLM-L6-v2"' in card.split("---")[1]
    assert "- Base model: `minilm` (sentence-transformers/all-MiniLM-L6-v2)" in card


def test_a_tokenizer_without_pad_exports_its_eos_as_pad(tmp_path):
    """GPT-2 / Llama 3 tokenizers have no pad token. The export gives them their end-of-sequence
    token as pad (what the exported config's pad_token_id says), never id 0: that is "!" in
    those vocabularies, and transformers' last-token heads skip every trailing pad id."""
    from test_family_llama import byte_level_tokenizer

    from jaxtl import export

    tok = byte_level_tokenizer()
    assert tok.pad_token_id is None and tok.eos_token_id == 1
    assert export._save_tokenizer(tok, tmp_path, None) == 1
    assert transformers.AutoTokenizer.from_pretrained(tmp_path).pad_token_id == 1
    assert tok.pad_token_id is None  # the run's own tokenizer is left as it was


@pytest.mark.parametrize("family", ["bert", "roberta", "camembert", "ernie", "data2vec-text"])
def test_a_bare_encoder_export_carries_the_checkpoints_pooler(base_dirs, tmp_path, family):
    """BertModel and RobertaModel hold a pooler the encoder does not run: the bare encoder's
    export carries the checkpoint's, so transformers loads the folder with nothing missing
    (it warned and drew the pooler at random); a task checkpoint's (``bert.pooler``) too."""
    base = base_dirs(family)
    pre = models.from_pretrained(base)
    out = models.save_pretrained(pre.model, tmp_path / "out", hf_config=pre.hf_config)
    theirs, info = transformers.AutoModel.from_pretrained(str(out), output_loading_info=True)
    assert not info["missing_keys"], info
    original = transformers.AutoModel.from_pretrained(str(base))
    for a, b in zip(theirs.pooler.parameters(), original.pooler.parameters(), strict=True):
        assert torch.equal(a, b)
    if family == "bert":  # from a fine-tuned classifier's folder: its pooler, under bert.
        torch.manual_seed(3)
        tuned = transformers.BertForSequenceClassification(original.config)
        tuned.save_pretrained(tmp_path / "tuned")
        pre = models.from_pretrained(tmp_path / "tuned")
        out = models.save_pretrained(pre.model, tmp_path / "out2", hf_config=pre.hf_config)
        again = transformers.AutoModel.from_pretrained(str(out))
        assert torch.equal(again.pooler.dense.weight, tuned.bert.pooler.dense.weight)
