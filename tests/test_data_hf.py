"""``hf:`` spec strings: Hugging Face datasets from save_to_disk folders and data files, offline."""

import re
import subprocess
import sys

import pytest

from jaxtl.data import DataError, get_task

datasets = pytest.importorskip("datasets")

ROWS = {
    "train": {"sentence": ["a fine film", "dull", "great fun"], "label": [1, 0, 1]},
    "validation": {"sentence": ["not bad"], "label": [1]},
    "test": {"sentence": ["who knows"], "label": [-1]},
}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    # Data files are prepared into the datasets cache: keep it inside the test's folder.
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


def sentiment() -> "datasets.DatasetDict":
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    return datasets.DatasetDict(
        {s: datasets.Dataset.from_dict(r, features=features) for s, r in ROWS.items()}
    )


def test_a_label_column_with_no_value_in_any_row_is_an_unlabelled_split(tmp_path):
    """pandas writes an unlabelled test frame's label column as nulls: read unlabelled, as a
    split without the column is; a null among labels stays a bad row, named."""
    datasets.Dataset.from_dict({"text": ["good", "bad"], "label": ["pos", "neg"]}).to_parquet(
        str(tmp_path / "train.parquet"))  # fmt: skip
    datasets.Dataset.from_dict({"text": ["fine", "meh"], "label": [None, None]}).to_parquet(
        str(tmp_path / "test.parquet"))  # fmt: skip
    task = get_task(f"hf:name=t,path={tmp_path}/{{split}}.parquet")
    assert [(e.text, e.label) for e in task.load("test")] == [("fine", None), ("meh", None)]
    datasets.Dataset.from_dict({"text": ["a", "b"], "label": ["pos", None]}).to_parquet(
        str(tmp_path / "mixed.parquet"))  # fmt: skip
    with pytest.raises(DataError, match=r"mixed\.parquet:1: column 'label': no label \(None\)"):
        get_task(f"hf:name=m,path={tmp_path}/mixed.parquet").load("train")


def test_int_labels_without_a_class_label_take_label_names_by_id(tmp_path):
    """Hugging Face's to_json writes a ClassLabel as its integer (conll2003's ner_tags): with
    label_names= the ids name their classes, as the file reader does."""
    (tmp_path / "ner.jsonl").write_text('{"tokens": ["EU", "rejects"], "ner_tags": [3, 0]}\n')
    names = "O|B-PER|I-PER|B-ORG|I-ORG"
    task = get_task(f"hf:name=n,path={tmp_path}/ner.jsonl,kind=tagging,text=tokens,"
                    f"label=ner_tags,label_names={names}")  # fmt: skip
    assert [e.label for e in task.load("train")] == [("B-ORG", "O")]
    (tmp_path / "c.jsonl").write_text('{"text": "good", "label": 1}\n{"text": "bad", "label": 0}\n')
    task = get_task(f"hf:name=c,path={tmp_path}/c.jsonl,label_names=neg|pos")
    assert [(e.text, e.label) for e in task.load("train")] == [("good", 1), ("bad", 0)]


def test_save_to_disk_folder(tmp_path):
    sentiment().save_to_disk(str(tmp_path / "sent"))
    task = get_task("hf:name=sent,path=sent,text=sentence,label=label", tmp_path)
    assert task.name == "sent" and task.kind == "classification"
    assert task.splits == ("train", "dev", "test")  # validation -> dev
    assert task.label_names == ("neg", "pos")  # from the ClassLabel
    train = task.load("train")
    assert [(e.text, e.label) for e in train] == [("a fine film", 1), ("dull", 0), ("great fun", 1)]
    assert train[1].source == f"{tmp_path / 'sent' / 'train'}:1"
    assert [(e.text, e.label) for e in task.load("dev")] == [("not bad", 1)]
    assert [e.label for e in task.load("test")] == [None]  # all -1: an unlabelled split
    # A single Dataset is the train split; an absolute path needs no data_dir.
    sentiment()["train"].save_to_disk(str(tmp_path / "one"))
    one = get_task(f"hf:name=one,path={tmp_path / 'one'},text=sentence")
    assert one.splits == ("train",) and len(one.load("train")) == 3
    # label= empty: an unlabelled corpus (kind lm), e.g. for pretrain.corpus.
    corpus = get_task(f"hf:name=c,path={tmp_path / 'one'},text=sentence,label=")
    assert corpus.kind == "lm" and [e.label for e in corpus.load("train")] == [None] * 3


def test_parquet_split_files(tmp_path):
    for split, ds in sentiment().items():
        ds.to_parquet(str(tmp_path / "pq" / f"{split}.parquet"))
    task = get_task("hf:name=pq,path=pq/{split}.parquet,text=sentence,label=label", tmp_path)
    assert task.splits == ("train", "dev", "test") and task.label_names == ("neg", "pos")
    assert [(e.text, e.label) for e in task.load("train")] == [
        ("a fine film", 1), ("dull", 0), ("great fun", 1)]  # fmt: skip
    assert task.load("dev")[0].source == f"{tmp_path / 'pq' / 'validation.parquet'}:0"
    # The same rows as JSON lines with string labels: sorted train labels, like the file task.
    for split, r in ROWS.items():
        rows = [{"s": s, "y": ["neg", "pos"][y]} for s, y in zip(r["sentence"], r["label"])]
        datasets.Dataset.from_list(rows).to_json(str(tmp_path / "js" / f"{split}.jsonl"))
    js = get_task("hf:name=js,path=js/*.jsonl,text=s,label=y", tmp_path)  # a glob: all as train
    assert js.splits == ("train",) and js.label_names == ("neg", "pos")
    assert len(js.load("train")) == 5


def test_an_id_column_is_each_examples_own_id(tmp_path):
    """As in the file task: the ``id`` column's values (integers stay integers), another
    column by ``id=``, numbered rows without one; a missing id is a bad row, named."""
    rows = {"idx": [4, 9], "sentence": ["a fine film", "dull"], "label": [1, 0]}
    datasets.Dataset.from_dict(rows).to_parquet(str(tmp_path / "a.parquet"))
    assert [e.id for e in get_task(f"hf:name=a,path={tmp_path}/a.parquet,text=sentence")
            .load("train")] == [None, None]  # fmt: skip
    task = get_task(f"hf:name=a,path={tmp_path}/a.parquet,text=sentence,id=idx")
    assert [(e.text, e.id) for e in task.load("train")] == [("a fine film", 4), ("dull", 9)]
    rows = {"id": ["x1", None], "sentence": ["a fine film", "dull"], "label": [1, 0]}
    datasets.Dataset.from_dict(rows).to_parquet(str(tmp_path / "b.parquet"))
    with pytest.raises(
        DataError,
        match=re.escape(
            f"{tmp_path / 'b.parquet'}:1: id column 'id': "
            "None is not a non-empty string or an integer"
        ),
    ):
        get_task(f"hf:name=b,path={tmp_path}/b.parquet,text=sentence").load("train")


def test_token_classification(tmp_path):
    features = datasets.Features(
        {
            "tokens": datasets.List(datasets.Value("string")),
            "ner_tags": datasets.List(datasets.ClassLabel(names=["O", "B-PER", "I-PER"])),
        }
    )
    ds = datasets.Dataset.from_dict(
        {"tokens": [["Ann", "Lee", "runs"], ["Bob"]], "ner_tags": [[1, 2, 0], [1]]},
        features=features,
    )
    datasets.DatasetDict({"train": ds, "validation": ds}).save_to_disk(str(tmp_path / "ner"))
    task = get_task("hf:name=ner,path=ner,text=tokens,label=ner_tags", tmp_path)
    assert task.kind == "tagging" and task.iob and task.label_names == ("O", "B-PER", "I-PER")
    first = task.load("dev")[0]
    assert first.words == ("Ann", "Lee", "runs") and first.label == ("B-PER", "I-PER", "O")
    assert task.metrics == ("span_f1", "token_accuracy")


def test_hub_name_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_home"))
    monkeypatch.delenv("HF_DATASETS_CACHE")
    with pytest.raises(DataError) as e:
        get_task("hf:name=imdb,path=stanfordnlp/imdb,text=text", tmp_path)
    msg = str(e.value)
    assert "\n" not in msg
    assert "'stanfordnlp/imdb' is not in the local Hugging Face cache" in msg
    assert str(tmp_path / "empty_home") in msg and "path=/dir/saved_with_save_to_disk" in msg


def test_missing_column_and_bad_rows(tmp_path):
    sentiment().save_to_disk(str(tmp_path / "sent"))
    with pytest.raises(DataError, match=r"no column 'review'; columns: \['sentence', 'label'\]"):
        get_task("hf:name=s,path=sent,text=review,label=label", tmp_path).load("train")
    with pytest.raises(DataError, match=r"no label column 'stars'"):
        get_task("hf:name=s,path=sent,text=sentence,label=stars", tmp_path)
    rows = [{"s": "ok", "y": "pos"}, {"s": "", "y": "neg"}, {"s": "hm", "y": "meh"}]
    train = rows[:2] + [{"s": "meh", "y": "neg"}]
    datasets.Dataset.from_list(train).to_json(str(tmp_path / "j" / "train.json"))
    dev = tmp_path / "j" / "dev.json"
    datasets.Dataset.from_list(rows).to_json(str(dev))
    task = get_task("hf:name=j,path=j/{split}.json,text=s,label=y,label_names=neg|pos", tmp_path)
    with pytest.raises(DataError, match=re.escape(f"{dev}:1: column 's': text is empty")):
        task.load("dev")
    skip = get_task("hf:name=j,path=j/{split}.json,text=s,label=y,on_bad_row=skip", tmp_path)
    data = skip.load("dev")
    assert [e.text for e in data] == ["ok"] and data.skipped == 2
    assert f"{dev}:2: column 'y': label 'meh' is not one of ['neg', 'pos']" in data.skip_reasons[1]


def test_importing_jaxtl_data_does_not_import_datasets():
    code = "import sys, jaxtl.data, jaxtl.data.spec; print('datasets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_file_the_builder_cannot_read_is_named_and_encoding_reads_cp1252(tmp_path):
    """A local file Hugging Face's builders fail on (text that is not UTF-8, broken JSON) stops
    with one DataError naming it and why, not the builder's traceback; encoding= reads a
    cp1252 CSV, as the file reader does."""
    (tmp_path / "train.csv").write_bytes("text,label\ncafé crème,pos\nbad,neg\n".encode("cp1252"))
    with pytest.raises(DataError, match=r"train.csv: the csv reader cannot read it: .*UTF8.*"
                                        r"encoding=cp1252 reads a file saved by Excel"):  # fmt: skip
        get_task(f"hf:name=h,path={tmp_path}/train.csv").load("train")
    task = get_task(f"hf:name=h,path={tmp_path}/train.csv,encoding=cp1252")
    assert [e.text for e in task.load("train")] == ["café crème", "bad"]
    (tmp_path / "b.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": broken\n')
    with pytest.raises(DataError, match=r"b.jsonl: the json reader cannot read it: "):
        get_task(f"hf:name=h,path={tmp_path}/b.jsonl").load("train")


def test_a_bioes_class_label_reads_as_iob2_spans(tmp_path):
    """A DatasetDict whose tags are a BIOES ClassLabel (as some OntoNotes conversions have)
    reads as IOB2: the task's tag set and every example's tags."""
    names = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]
    features = datasets.Features({
        "tokens": datasets.Sequence(datasets.Value("string")),
        "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names)),
    })  # fmt: skip
    ds = datasets.Dataset.from_dict({"tokens": [["Anna", "flew", "to", "New", "York"]],
                                     "ner_tags": [[4, 0, 0, 5, 7]]}, features=features)  # fmt: skip
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "d"))
    task = get_task(f"hf:name=h,path={tmp_path / 'd'},text=tokens,label=ner_tags")
    assert task.label_names == ("O", "B-PER", "I-PER", "B-LOC", "I-LOC") and task.iob
    assert [e.label for e in task.load("train")] == [("B-PER", "O", "O", "B-LOC", "I-LOC")]
    assert task.tag_scheme == "bioes"


def test_a_split_streams_a_batch_of_rows_at_a_time(tmp_path, monkeypatch):
    """``iterate`` reads the Arrow table a batch of rows at a time (a Parquet file larger than
    memory trains through the token cache and predicts): its first examples come before a bad
    row in a later batch, rows keep their numbers across batches, and on a sound file it gives
    ``load``'s examples; a label column blank in every batch is still an unlabelled split."""
    from jaxtl.data import hf_datasets

    monkeypatch.setattr(hf_datasets, "ROWS_PER_READ", 4)
    texts = [f"text {i}" for i in range(10)]
    labels = ["pos" if i % 2 else "neg" for i in range(10)]
    datasets.Dataset.from_dict({"text": texts + [""], "label": labels + ["pos"]}).to_parquet(
        str(tmp_path / "bad.parquet"))  # fmt: skip
    task = get_task(f"hf:name=t,path={tmp_path}/bad.parquet,label_names=neg|pos")
    stream = task.iterate("train")
    first = [next(stream) for _ in range(5)]  # past the first batch of four
    assert [(e.text, e.label, e.source[-2:]) for e in first][3:] == [("text 3", 1, ":3"),
                                                                     ("text 4", 0, ":4")]  # fmt: skip
    with pytest.raises(DataError, match=r"bad\.parquet:10: column 'text': text is empty"):
        list(stream)
    datasets.Dataset.from_dict({"text": texts, "label": labels, "id": [f"r{i}" for i in
                                                                       range(10)]}).to_parquet(
        str(tmp_path / "train.parquet"))  # fmt: skip
    datasets.Dataset.from_dict({"text": texts[:9], "label": [None] * 9}).to_parquet(
        str(tmp_path / "test.parquet"))  # fmt: skip
    task = get_task(f"hf:name=t,path={tmp_path}/{{split}}.parquet")
    assert task.label_names == ("neg", "pos")
    for split in ("train", "test"):
        assert list(task.iterate(split)) == list(task.load(split)), split
    assert [e.id for e in task.iterate("train")] == [f"r{i}" for i in range(10)]
    assert [e.label for e in task.iterate("test")] == [None] * 9
