"""Starting from a transformers task checkpoint: the encoder loads, and its head is reused for a
target task whose labels fit (reordered by name) and dropped otherwise, reported either way."""

from __future__ import annotations

import json
import logging

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the task checkpoints are written with transformers")
transformers = pytest.importorskip("transformers")

from safetensors.numpy import load_file  # noqa: E402

from jaxtl import assembly, models  # noqa: E402
from jaxtl import config as config_lib  # noqa: E402
from jaxtl.data.catalogue import get_task  # noqa: E402
from jaxtl.data.prepare import TaskData  # noqa: E402
from jaxtl.data.tasks import Task  # noqa: E402
from jaxtl.models import hf_heads  # noqa: E402

TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=40)  # fmt: skip
MNLI = ("entailment", "neutral", "contradiction")


def task_data(task: Task, index: int = 0) -> TaskData:
    return TaskData(task, index, task.name.replace("/", "_"), 0, None, [], "dev")


def toy(name: str, kind: str, labels) -> TaskData:
    return task_data(Task(name, kind, loader=None, label_names=tuple(labels)))


@pytest.fixture(scope="module")
def mnli_dir(tmp_path_factory):
    """A tiny BertForSequenceClassification fine-tuned on 'MNLI' (random weights, 3 labels)."""
    path = tmp_path_factory.mktemp("mnli")
    cfg = transformers.BertConfig(**TINY, id2label=dict(enumerate(MNLI)))
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(cfg).eval()
    with torch.no_grad():  # a non-zero classifier bias, so reordering is visible in the bias too
        model.classifier.bias.copy_(torch.tensor([0.3, -0.2, 0.1]))
    model.save_pretrained(path)
    return path


def test_task_checkpoint_head_reused_when_labels_fit_dropped_otherwise(mnli_dir, caplog):
    enc = models.from_pretrained(mnli_dir).model  # classifier.* no longer refused
    three = toy("toy/nli3", "classification", ("contradiction", "entailment", "neutral"))
    entailment = get_task("builtin/entailment", None)  # entailment / not_entailment
    assert entailment.num_labels == 2
    two = task_data(entailment, 1)
    with caplog.at_level(logging.INFO, logger="jaxtl.models.hf_heads"):
        model = assembly.build_model(enc, [three, two], config_lib.base_config())
    report = model.init_report.to_json()
    json.dumps(report)  # the caller writes it as JSON
    assert report["architecture"] == "BertForSequenceClassification"
    assert report["labels"] == list(MNLI)
    r3, r2 = report["tasks"]["toy/nli3"], report["tasks"]["builtin/entailment"]
    assert r3["classifier"] == "reused" and "reordered" in r3["reason"]
    assert r2["classifier"] == "dropped" and "3 labels" in r2["reason"]
    assert r3["pooler"] == r2["pooler"] == "checkpoint"
    logged = caplog.text
    assert "toy/nli3" in logged and "reused" in logged
    assert "builtin/entailment" in logged and "dropped" in logged

    ckpt = load_file(str(mnli_dir / "model.safetensors"))
    order = [2, 0, 1]  # the task's labels as checkpoint rows
    head3 = model.heads["toy_nli3"]
    np.testing.assert_array_equal(
        head3.classifier.kernel[...], ckpt["classifier.weight"].T[:, order]
    )
    np.testing.assert_array_equal(head3.classifier.bias[...], ckpt["classifier.bias"][order])
    for head in (head3, model.heads["builtin_entailment"]):
        np.testing.assert_array_equal(head.dense.kernel[...], ckpt["bert.pooler.dense.weight"].T)
    head2 = model.heads["builtin_entailment"]
    assert head2.classifier.kernel[...].shape == (32, 2)

    # The reused head computes the checkpoint's logits, columns in the task's label order.
    ids = np.array([[5, 17, 42, 9, 3], [7, 8, 9, 0, 0]])
    mask = (ids != 0).astype(np.int64)
    with torch.no_grad():
        ref = transformers.AutoModelForSequenceClassification.from_pretrained(mnli_dir).eval()
        theirs = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits
    _, feats = model.features(jnp.asarray(ids), jnp.asarray(mask))
    ours = np.asarray(head3(feats, jnp.asarray(mask)))
    assert np.abs(ours - theirs.numpy()[:, order]).max() <= 1e-5


def test_fresh_head_of_a_dropped_checkpoint_head_is_the_usual_one(mnli_dir, tmp_path):
    """Dropping draws nothing: the 2-way head equals the one built on the bare encoder."""
    base = transformers.BertForSequenceClassification.from_pretrained(mnli_dir).bert
    base.save_pretrained(tmp_path / "bare")
    two = task_data(get_task("builtin/entailment", None))
    c = config_lib.base_config()
    a = assembly.build_model(models.from_pretrained(mnli_dir).model, [two], c)
    b = assembly.build_model(models.from_pretrained(tmp_path / "bare").model, [two], c)
    for m in (a, b):
        assert m.init_report.to_json()["tasks"]["builtin/entailment"]["pooler"] == "checkpoint"
    assert b.init_report.to_json()["tasks"]["builtin/entailment"]["classifier"] == "fresh"
    ka, kb = a.heads["builtin_entailment"], b.heads["builtin_entailment"]
    np.testing.assert_array_equal(ka.classifier.kernel[...], kb.classifier.kernel[...])


@pytest.mark.parametrize(
    "labels, ckpt, expect",
    [
        (("x", "y", "z"), MNLI, None),  # same count, other names
        (("a", "b", "c"), None, [0, 1, 2]),  # unnamed checkpoint labels: in order
        (("Neutral", "ENTAILMENT", "contradiction"), MNLI, [1, 0, 2]),  # case-insensitive
        (("a", "b"), MNLI, None),
    ],
)
def test_label_matching(labels, ckpt, expect):
    task = Task("t", "classification", loader=None, label_names=labels)
    order, _ = hf_heads._label_order(task, 3, list(ckpt) if ckpt else None, None)
    assert order == expect
    default = {"id2label": {"0": "LABEL_0", "1": "LABEL_1"}}
    assert hf_heads.checkpoint_labels(default) is None


def test_token_classification_checkpoint_reused_for_tagging_only(tmp_path):
    tags = ("O", "B-PER", "I-PER")
    cfg = transformers.BertConfig(**TINY, id2label=dict(enumerate(tags)))
    torch.manual_seed(1)
    transformers.BertForTokenClassification(cfg).save_pretrained(tmp_path)
    enc = models.from_pretrained(tmp_path).model
    ner = toy("toy/ner", "tagging", tags)
    sent = toy("toy/sent", "classification", tags)  # a 3-way sentence task: not a token head
    model = assembly.build_model(enc, [ner, sent], config_lib.base_config())
    tasks = model.init_report.to_json()["tasks"]
    assert tasks["toy/ner"]["classifier"] == "reused"
    assert tasks["toy/sent"]["classifier"] == "dropped"
    assert "TokenClassification" in tasks["toy/sent"]["reason"]
    ckpt = load_file(str(tmp_path / "model.safetensors"))
    kernel = model.heads["toy_ner"].classifier.kernel[...]
    np.testing.assert_array_equal(kernel, ckpt["classifier.weight"].T)


def test_question_answering_checkpoint_reused_for_qa_only(tmp_path):
    """A SQuAD-style checkpoint (BertForQuestionAnswering) as model.name: a qa task starts from
    its qa_outputs (STILTs from one QA set to another); a tagging task gets a fresh head."""
    torch.manual_seed(2)
    transformers.BertForQuestionAnswering(transformers.BertConfig(**TINY)).save_pretrained(tmp_path)
    enc = models.from_pretrained(tmp_path).model  # qa_outputs.* known, not refused
    qa = task_data(Task("toy/qa", "qa", loader=None))
    ner = toy("toy/ner", "tagging", ("O", "B-PER"))
    model = assembly.build_model(enc, [qa, ner], config_lib.base_config())
    tasks = model.init_report.to_json()["tasks"]
    assert tasks["toy/qa"]["classifier"] == "reused", tasks["toy/qa"]
    assert tasks["toy/ner"]["classifier"] == "fresh", tasks["toy/ner"]
    ckpt = load_file(str(tmp_path / "model.safetensors"))
    head = model.heads["toy_qa"].classifier
    np.testing.assert_array_equal(head.kernel[...], ckpt["qa_outputs.weight"].T)
    np.testing.assert_array_equal(head.bias[...], ckpt["qa_outputs.bias"])
