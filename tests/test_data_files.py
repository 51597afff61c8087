"""Generic user tasks from TSV / CSV / JSONL files with a column mapping; plain text corpora."""

import json
import re

import pytest

from jaxtl.data import DataError, get_task


def test_tsv_classification_labels_from_train(tmp_path):
    (tmp_path / "train.tsv").write_text("id\tsentence\tlabel\n1\tgood\tpos\n2\tbad\tneg\n")
    (tmp_path / "dev.tsv").write_text("id\tsentence\tlabel\n3\tfine\tpos\n4\tmeh\tmeh\n")
    task = get_task("file", tmp_path, path="{split}.tsv", text="sentence", label="label")
    assert task.splits == ("train", "dev") and task.label_names == ("neg", "pos")
    assert [(e.text, e.label) for e in task.load("train")] == [("good", 1), ("bad", 0)]
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'dev.tsv'}:3: label 'meh'")):
        task.load("dev")
    with pytest.raises(DataError, match="no split 'test'"):
        task.load("test")


def test_empty_labels_and_ambiguous_columns_are_named(tmp_path):
    """An empty label cell is a missing value, named at its line (not a class ""); a test split
    whose label column is blank in every row (pandas' to_csv of unlabelled rows) is unlabelled;
    a header naming a used column twice is refused, not read from the first."""
    (tmp_path / "train.csv").write_text("text,label\ngood,pos\nbad,\n")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'train.csv'}:3: label field "
                                                  "'label' is empty")):  # fmt: skip
        get_task(f"file:name=t,path={tmp_path}/train.csv")
    (tmp_path / "train.csv").write_text("text,label\ngood,pos\nbad,neg\n")
    (tmp_path / "test.csv").write_text("text,label\nfine,\nmeh, \n")
    (tmp_path / "test.jsonl").write_text('{"text": "ok", "label": null}\n')
    task = get_task(f"file:name=t,paths=train:{tmp_path}/train.csv|test:{tmp_path}/test.csv")
    assert [(e.text, e.label) for e in task.load("test")] == [("fine", None), ("meh", None)]
    js = get_task(f"file:name=t,paths=train:{tmp_path}/train.csv|test:{tmp_path}/test.jsonl")
    assert [(e.text, e.label) for e in js.load("test")] == [("ok", None)]
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'test.csv'}: label column "
                                                  "'label' is blank in every row")):  # fmt: skip
        get_task(f"file:name=t,path={tmp_path}/test.csv")  # the training split: labels needed
    (tmp_path / "dup.tsv").write_text("text\ttext\tlabel\nx\ty\tpos\n")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'dup.tsv'}: the header names "
                                                  "column 'text' 2 times (columns 0, 1")):  # fmt: skip
        get_task(f"file:name=t,path={tmp_path}/dup.tsv")


def test_semicolon_csv_by_delimiter_and_a_one_field_header_says_so(tmp_path):
    (tmp_path / "train.csv").write_text('text;label\n"good; really";pos\nbad;neg\n')
    with pytest.raises(DataError, match=re.escape("no label column 'label' (the header is one "
                                                  "field: is the file separated by ';'? "
                                                  "delimiter=semicolon splits it)")):  # fmt: skip
        get_task(f"file:name=t,path={tmp_path}/train.csv")
    for d in (";", "semicolon"):
        task = get_task(f"file:name=t,path={tmp_path}/train.csv,delimiter={d}")
        assert [(e.text, e.label) for e in task.load("train")] == [("good; really", 1), ("bad", 0)]
    with pytest.raises(ValueError, match="delimiter must be one character"):
        get_task(f"file:name=t,path={tmp_path}/train.csv,delimiter=ab")
    # CoNLL-2003's train.txt: no table extension, so read as TSV; the error says what reads it
    (tmp_path / "train.txt").write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\n")
    with pytest.raises(DataError, match=re.escape("(the file was read as TSV, its extension "
                                                  "naming no format: CoNLL columns need "
                                                  "kind=tagging or format=conll")):  # fmt: skip
        get_task(f"file:name=t,path={tmp_path}/train.txt")
    assert get_task(f"file:name=t,path={tmp_path}/train.txt,kind=tagging").load("train")[0].words \
        == ("EU",)  # fmt: skip


def test_a_json_array_of_objects_reads_as_json_lines_do(tmp_path):
    """``json.dump`` of a list (or pandas' records JSON): each object named by its first line; a
    non-object element is a bad row; broken JSON and a pretty-printed single object are named."""
    (tmp_path / "train.json").write_text(
        '[\n  {"text": "good", "label": "pos"},\n  {"text": "bad",\n   "label": "neg"},\n  3\n]\n'
    )
    task = get_task(f"file:name=t,path={tmp_path}/train.json,on_bad_row=skip")
    got = task.load("train")
    assert [(e.text, e.label) for e in got] == [("good", 1), ("bad", 0)]
    assert [e.source.rsplit(":", 1)[1] for e in got] == ["2", "3"]
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'train.json'}:5: expected a "
                                                  "JSON object, found int")):  # fmt: skip
        get_task(f"file:name=t,path={tmp_path}/train.json")
    (tmp_path / "broken.json").write_text('[{"text": "good", "label": "pos"},\n {"text" "x"}]')
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'broken.json'}:2: invalid JSON")):
        get_task(f"file:name=t,path={tmp_path}/broken.json")
    (tmp_path / "one.json").write_text('{\n "text": "good",\n "label": "pos"\n}\n')
    with pytest.raises(DataError, match="one JSON object spread over lines, not JSON lines"):
        get_task(f"file:name=t,path={tmp_path}/one.json")


def test_labels_and_tags_written_as_class_ids_take_label_names_by_id(tmp_path):
    """Hugging Face's to_json writes a ClassLabel as its integer: with label_names given, id i
    is label_names[i] (tags as labels); names that are numbers match as names; integer tags
    without names are refused, as IOB spans cannot be read from them."""
    (tmp_path / "ner.jsonl").write_text(
        '{"tokens": ["EU", "rejects", "German"], "ner_tags": '
        '[3, 0, 7]}\n{"tokens": ["Peter"], "ner_tags": [1]}\n'
    )
    names = "O|B-PER|I-PER|B-ORG|I-ORG|B-LOC|I-LOC|B-MISC|I-MISC"
    spec = f"file:name=n,path={tmp_path}/ner.jsonl,kind=tagging,text=tokens,label=ner_tags"
    task = get_task(f"{spec},label_names={names}")
    assert [e.label for e in task.load("train")] == [("B-ORG", "O", "B-MISC"), ("B-PER",)]
    assert task.iob and task.label_names == tuple(names.split("|"))
    with pytest.raises(DataError, match=r"the tags are class ids \('0', \.\.\.\), not names: "
                                        r"name the classes in id order with label_names="):  # fmt: skip
        get_task(spec)
    (tmp_path / "c.jsonl").write_text('{"text": "good", "label": 1}\n{"text": "bad", "label": 0}\n')
    task = get_task(f"file:name=c,path={tmp_path}/c.jsonl,label_names=neg|pos")
    assert [(e.text, e.label) for e in task.load("train")] == [("good", 1), ("bad", 0)]
    flipped = get_task(f"file:name=c,path={tmp_path}/c.jsonl,label_names=1|0")  # names, not ids
    assert [e.label for e in flipped.load("train")] == [0, 1]
    with pytest.raises(DataError, match=r"c\.jsonl:1: label '1' is not one of \['neg'\]"):
        get_task(f"file:name=c,path={tmp_path}/c.jsonl,label_names=neg").load("train")


def test_an_id_column_is_each_examples_own_id(tmp_path, caplog):
    """The ``id`` column (by default the one named id) gives each example the id its
    prediction record carries: strings from a table, a JSON integer kept an integer; a file
    without it, or ``id=`` empty, leaves the rows numbered; a bad id is a bad row, named."""
    (tmp_path / "train.tsv").write_text("id\tsentence\tlabel\nq1\tgood\tpos\n q2 \tbad\tneg\n")
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\nfine\tpos\n")
    (tmp_path / "test.tsv").write_text("id\tsentence\nq3\tfine\n\tmeh\n")
    task = get_task(f"file:name=t,path={tmp_path}/{{split}}.tsv,text=sentence")
    assert [(e.text, e.id) for e in task.load("train")] == [("good", "q1"), ("bad", "q2")]
    assert [e.id for e in task.load("dev")] == [None]  # no id column: numbered
    with pytest.raises(
        DataError,
        match=re.escape(
            f"{tmp_path / 'test.tsv'}:3: id column 'id': '' is not a non-empty string or an integer"
        ),
    ):
        task.load("test")
    skip = get_task(f"file:name=t,path={tmp_path}/{{split}}.tsv,text=sentence,on_bad_row=skip")
    assert [(e.text, e.id) for e in skip.load("test")] == [("fine", "q3")]
    off = get_task(f"file:name=t,path={tmp_path}/{{split}}.tsv,text=sentence,id=")
    assert [e.id for e in off.load("train")] == [None, None]
    with caplog.at_level("WARNING"):
        named = get_task(f"file:name=t,path={tmp_path}/{{split}}.tsv,text=sentence,id=qid")
        assert [e.id for e in named.load("train")] == [None, None]
    assert "no id column 'qid'" in caplog.text
    (tmp_path / "h.tsv").write_text("k7\tgood\tpos\n")  # headerless: id by column index
    headerless = get_task(f"file:name=h,path={tmp_path}/h.tsv,header=0,id=0,text=1,label=2")
    assert [(e.text, e.id) for e in headerless.load("train")] == [("good", "k7")]
    (tmp_path / "j.jsonl").write_text(json.dumps({"id": 17, "text": "good", "label": "pos"}) +
                                      "\n" + json.dumps({"id": 1.5, "text": "bad",
                                                         "label": "neg"}) + "\n")  # fmt: skip
    js = get_task(f"file:name=j,path={tmp_path}/j.jsonl,on_bad_row=skip")
    assert [(e.text, e.id) for e in js.load("train")] == [("good", 17)]
    words = "id\ttokens\ttags\ns1\tAnna flew\tB-PER O\n"
    (tmp_path / "ner.tsv").write_text(words)
    ner = get_task(f"file:name=n,path={tmp_path}/ner.tsv,text=tokens,label=tags,kind=tagging")
    assert [(e.words, e.id) for e in ner.load("train")] == [(("Anna", "flew"), "s1")]
    # the default id column in other case (a Kaggle test file's "ID", "Id"): its ids, not row
    # numbers, in the file and hf readers
    (tmp_path / "k.csv").write_text("ID,text,label\nk1,good,pos\nk2,bad,neg\n")
    (tmp_path / "k.jsonl").write_text('{"Id": "j1", "text": "good", "label": "pos"}\n')
    for spec in (f"file:name=k,path={tmp_path}/k.csv", f"file:name=k,path={tmp_path}/k.jsonl",
                 f"hf:name=k,path={tmp_path}/k.csv"):  # fmt: skip
        got = [e.id for e in get_task(spec).load("train")]
        assert got == (["j1"] if spec.endswith(".jsonl") else ["k1", "k2"]), spec


def test_csv_pairs_with_quotes_and_regression(tmp_path):
    (tmp_path / "a.csv").write_text('s1,s2,score\n"a, b",c,4.5\nd,"e ""f""",1\n')
    task = get_task("file", tmp_path, paths={"train": "a.csv"}, format="csv", text="s1",
                    text_pair="s2", label="score", kind="regression")  # fmt: skip
    data = task.load("train")
    assert [(e.text, e.text_pair, e.label) for e in data] == [
        ("a, b", "c", 4.5),
        ("d", 'e "f"', 1.0),
    ]
    assert task.metrics == ("pearson", "spearman")
    (tmp_path / "b.csv").write_text("s1,s2,score\nx,y,high\n")
    bad = get_task("file", tmp_path, paths={"train": "b.csv"}, format="csv", text="s1",
                   label="score", kind="regression")  # fmt: skip
    with pytest.raises(DataError, match=r"b\.csv:2: score 'high' is not a number"):
        bad.load("train")


def test_csv_quoted_fields_may_span_lines_as_pandas_writes_them(tmp_path):
    """A text with line breaks is one quoted field over several lines (pandas' to_csv, Excel):
    one example, not a short row; later rows keep their own line numbers; a quote never
    closed, or text after a closing quote, is named at the record's first line."""
    (tmp_path / "train.csv").write_text(
        'text,label\n"line one\nline two, still good",pos\n"he said ""dull""",neg\n\n'
        'fine,maybe?\n'
    )  # fmt: skip
    spec = "file:name=m,path={}.csv,text=text,label=label,label_names=neg|pos"
    task = get_task(spec.format("train"), tmp_path)
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'train.csv'}:6: label 'maybe?'")):
        task.load("train")
    skip = get_task(spec.format("train"), tmp_path, on_bad_row="skip")
    assert [(e.text, e.label) for e in skip.load("train")] == [
        ("line one\nline two, still good", 1), ('he said "dull"', 0)]  # fmt: skip
    (tmp_path / "open.csv").write_text('text,label\ngood,pos\n"never closed,pos\nbad,neg\n')
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'open.csv'}:3: a quoted field "
                                                  "opened here is never closed")):  # fmt: skip
        get_task(spec.format("open"), tmp_path).load("train")
    (tmp_path / "after.csv").write_text('text,label\ngood,pos\n"a"b,neg\n')
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'after.csv'}:3: malformed CSV")):
        get_task(spec.format("after"), tmp_path).load("train")


def test_translation_and_lm_tables_need_no_label_column(tmp_path):
    """A translation reads ``text`` and ``target``, an LM corpus ``text`` alone: neither file
    has a ``label`` column, and the default ``label="label"`` is not looked for (it failed:
    "no column 'label' in header ['en', 'de']")."""
    (tmp_path / "train.tsv").write_text("en\tde\nthe dog\tder Hund\na cat\teine Katze\n")
    mt = get_task("file:name=mt,path={split}.tsv,text=en,target=de,kind=translation", tmp_path)
    assert [(e.text, e.target) for e in mt.load("train")] == [
        ("the dog", "der Hund"), ("a cat", "eine Katze")]  # fmt: skip
    lm = get_task("file:name=c,path={split}.tsv,text=en,kind=lm", tmp_path)
    assert [e.text for e in lm.load("train")] == ["the dog", "a cat"]


def test_a_split_without_examples_is_named_not_crashed_on(tmp_path):
    """A header line and nothing else (dev.tsv crashed in the tokenizer with an IndexError;
    train.tsv said 'a classification task needs label_names'), and a file whose every row was
    bad and skipped, each stop with the file; a split empty for any other reason is named by
    task and split before tokenising."""
    from jaxtl import config as config_lib
    from jaxtl.data.prepare import split_data

    (tmp_path / "train.tsv").write_text("sentence\tlabel\n")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'train.tsv'}: no rows after its "
                                                  "header line")):  # fmt: skip
        get_task("file:name=m,path={split}.tsv,text=sentence,label=label", tmp_path)
    (tmp_path / "train.tsv").write_text("sentence\tlabel\ngood\n\nbad\n")
    with pytest.raises(DataError, match=re.escape(
            f"{tmp_path / 'train.tsv'}: no examples: all 2 rows are bad (first: "
            f"{tmp_path / 'train.tsv'}:2: expected 2 fields, found 1)")):  # fmt: skip
        get_task("file:name=m,path={split}.tsv,text=sentence,label=label,on_bad_row=skip", tmp_path)
    (tmp_path / "train.tsv").write_text("sentence\tlabel\ngood\tpos\n")
    task = get_task("file:name=m,path={split}.tsv,text=sentence,label=label", tmp_path)
    with pytest.raises(DataError, match="task 'm': its dev split has no examples"):
        split_data("dev", task, [], config_lib.base_config(), tokenizer=None, index=0)


def test_headerless_tsv_by_column_index(tmp_path):
    (tmp_path / "train.tsv").write_text("1 the film\t1\n2 no\t0\n")
    task = get_task("file", tmp_path, path="{split}.tsv", header=False, text=0, label=1,
                    label_names=("0", "1"))  # fmt: skip
    assert [e.label for e in task.load("train")] == [1, 0]


def test_jsonl_classification_and_tagging(tmp_path):
    rows = [{"t": "hi", "y": 1}, {"t": "yo", "y": 0}, {"t": "no label"}]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{oops\n")
    task = get_task("file", tmp_path, path="{split}.jsonl", format="jsonl", text="t", label="y",
                    label_names=("0", "1"), on_bad_row="skip")  # fmt: skip
    data = task.load("train")
    assert [e.label for e in data] == [1, 0] and data.skipped == 2
    assert "missing field 'y'" in data.skip_reasons[0] and "invalid JSON" in data.skip_reasons[1]
    tags = [{"w": ["Ann", "runs"], "t": ["B-PER", "O"]}]
    (tmp_path / "ner.jsonl").write_text(json.dumps(tags[0]) + "\n")
    ner = get_task("file", tmp_path, paths={"train": "ner.jsonl"}, format="jsonl", text="w",
                   label="t", kind="tagging")  # fmt: skip
    assert ner.iob and ner.load("train")[0].label == ("B-PER", "O")
    # A test split of words alone is read unlabelled; a train split without tags is an error.
    (tmp_path / "new.jsonl").write_text(json.dumps({"w": ["Bob", "sat"]}) + "\n")
    both = get_task("file", tmp_path, paths={"train": "ner.jsonl", "test": "new.jsonl"},
                    format="jsonl", text="w", label="t", kind="tagging")  # fmt: skip
    assert [(e.words, e.label) for e in both.load("test")] == [(("Bob", "sat"), None)]
    with pytest.raises(DataError, match=r"new\.jsonl: no label column 't'"):
        get_task("file", tmp_path, paths={"train": "new.jsonl"}, format="jsonl", text="w",
                 label="t", kind="tagging")  # fmt: skip


def test_tagging_from_a_table_of_space_separated_words_and_tags(tmp_path):
    """kind=tagging on a .tsv/.csv whose text=/label= name columns: each row holds a sentence's
    words and its tags, space-separated (a layout pandas and many NER sets use); a .tsv with
    column numbers (or none) is still CoNLL, one word per line."""
    (tmp_path / "train.tsv").write_text("tokens\ttags\nAnn runs\tB-PER O\nBob sat .\tB-PER O O\n")
    (tmp_path / "dev.tsv").write_text("tokens\ttags\nCy , too\tB-PER O O\nDee ran\tB-PER\n")
    (tmp_path / "test.tsv").write_text("tokens\nEve sat\n")
    task = get_task("file:name=t,path={split}.tsv,text=tokens,label=tags,kind=tagging,"
                    "on_bad_row=skip", tmp_path)  # fmt: skip
    assert task.kind == "tagging" and task.iob and task.label_names == ("B-PER", "O")
    assert [(e.words, e.label) for e in task.load("train")] == [
        (("Ann", "runs"), ("B-PER", "O")),
        (("Bob", "sat", "."), ("B-PER", "O", "O")),
    ]
    dev = task.load("dev")
    assert [e.words for e in dev] == [("Cy", ",", "too")]
    assert dev.skip_reasons == [f"{tmp_path / 'dev.tsv'}:3: tagging needs equal-length lists "
                                "of words and tags (got 2 words, 1 tags)"]  # fmt: skip
    assert [(e.words, e.label) for e in task.load("test")] == [(("Eve", "sat"), None)]
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "train.csv").write_text('tokens,tags\n"Ann , too",B-PER O O\n')
    csv = get_task("file:name=c,path=csv/train.csv,text=tokens,label=tags,kind=tagging", tmp_path)
    assert csv.load("train")[0].words == ("Ann", ",", "too")
    (tmp_path / "conll.tsv").write_text("Ann\tB-PER\nruns\tO\n")
    conll = get_task("file:name=c,path=conll.tsv,kind=tagging,delimiter=tab", tmp_path)
    assert conll.load("train")[0].label == ("B-PER", "O")


def test_text_corpus_and_wikitext_headings(tmp_path):
    (tmp_path / "c.txt").write_text("first line\n\n = Heading = \nsecond\n")
    assert [e.text for e in get_task("text", tmp_path, path="c.txt").load("train")] == [
        "first line", "= Heading =", "second"]  # fmt: skip
    dropped = get_task("text", tmp_path, path="c.txt", drop_headings=True).load("train")
    assert [e.text for e in dropped] == ["first line", "second"]


def test_a_corpus_in_wikitexts_layout_keeps_its_valid_split(tmp_path, data_dir):
    """WikiText's wiki.{train,valid,test}.tokens: a {split} pattern found no dev (valid was not
    looked for), so a run held out part of train instead, and the folder was refused (no .txt).
    Both now read all three splits, as the built-in wikitext reader does; a folder with two
    files for one split names them."""
    import gzip

    folder = tmp_path / "wt"
    folder.mkdir()
    (folder / "wiki.train.tokens").write_text("a b\n")
    (folder / "wiki.valid.tokens").write_text("c\n")
    with gzip.open(folder / "wiki.test.tokens.gz", "wt") as f:
        f.write("d\n")
    (folder / "README.md").write_text("not a split\n")
    for spec in (
        f"file:name=w,path={folder},kind=lm",
        "file:name=w,path=wt/wiki.{split}.tokens,kind=lm",
    ):
        if "{split}" in spec:  # the pattern names the file exactly: a plain one
            (folder / "wiki.test.tokens.gz").unlink()
            (folder / "wiki.test.tokens").write_text("d\n")
        task = get_task(spec, tmp_path)
        assert task.splits == ("train", "dev", "test"), spec
        assert [e.text for s in task.splits for e in task.load(s)] == ["a b", "c", "d"]
    (folder / "wiki.train.raw").write_text("a b\n")
    with pytest.raises(DataError, match=re.escape("2 files for split 'train' (wiki.train.raw, "
                                                  "wiki.train.tokens)")):  # fmt: skip
        get_task(f"file:name=w,path={folder},kind=lm")
    real = data_dir / "wikitext-103-subset"
    mine = get_task(f"file:name=w,path={real},kind=lm,drop_headings=1")
    builtin = get_task("wikitext", data_dir)
    assert mine.splits == builtin.splits == ("train", "dev", "test")
    for split in ("dev", "test"):
        assert [e.text for e in mine.load(split)] == [e.text for e in builtin.load(split)]


def test_parallel_must_align(tmp_path):
    (tmp_path / "train.en").write_text("a\nb\n")
    (tmp_path / "train.de").write_text("x\n")
    task = get_task("parallel", tmp_path, path=".", src="en", tgt="de")
    with pytest.raises(DataError, match="2 lines but .*has 1: not parallel"):
        task.load("train")


def test_fasttext_lines_label_first_lines_and_compressed_files(tmp_path, data_dir):
    """format=fasttext: fastText's __label__ words (anywhere in the line, several for
    multilabel), or with label_prefix= empty a first word that is the label (Kim (2014)'s SST
    files); no columns to name; lines without labels make an unlabelled split; .gz, .bz2 and
    .xz files are read through, whatever the format."""
    import bz2
    import lzma

    with bz2.open(tmp_path / "train.ft.txt.bz2", "wt") as f:
        f.write("__label__pos a  gripping film\n\n__label__neg dull __label__long and slow\n")
    with lzma.open(tmp_path / "test.ft.txt.xz", "wt") as f:
        f.write("a gripping film\nrather dull\n")
    spec = f"file:name=ft,path={tmp_path}/{{split}}.ft.txt.bz2,format=fasttext"
    with pytest.raises(DataError, match=r"train.ft.txt.bz2:3: 2 labels \(neg, long\) for one "
                                        r"text; kind=multilabel reads several"):  # fmt: skip
        get_task(spec)
    multi = get_task(spec + ",kind=multilabel")
    assert multi.label_names == ("long", "neg", "pos")
    assert [(e.text, e.label) for e in multi.load("train")] == [
        ("a gripping film", (2,)), ("dull and slow", (0, 1))]  # fmt: skip
    one = get_task(f"file:name=ft,paths=train:{tmp_path}/train.ft.txt.bz2|test:"
                   f"{tmp_path}/test.ft.txt.xz,format=fasttext,kind=multilabel")  # fmt: skip
    assert [(e.text, e.label) for e in one.load("test")] == [("a gripping film", None),
                                                             ("rather dull", None)]  # fmt: skip
    (tmp_path / "mixed.txt").write_text("__label__pos fine\nno label here\n")
    with pytest.raises(DataError, match=r"mixed.txt:2: missing field 'label'"):
        get_task(f"file:name=ft,path={tmp_path}/mixed.txt,format=fasttext")
    with pytest.raises(ValueError, match=r"format=fasttext lines have no columns .*leave out "
                                         r"text=review, text_pair="):  # fmt: skip
        get_task(f"file:name=ft,path={tmp_path}/mixed.txt,format=fasttext,text=review,"
                 "text_pair=b")  # fmt: skip
    # A gzipped CSV is still a CSV by its extension
    import gzip

    with gzip.open(tmp_path / "train.csv.gz", "wt") as f:
        f.write('text,label\n"fine, really",pos\n')
    assert [(e.text, e.label) for e in get_task(
        f"file:name=c,path={tmp_path}/train.csv.gz").load("train")] == [("fine, really", 0)]  # fmt: skip
    # Kim (2014)'s SST-2 sentence files: "label sentence", counts as SOURCES.md gives them
    d = data_dir / "SST-2-sentence"
    sst = get_task(f"file:name=s,paths=train:{d}/stsa.binary.train|dev:{d}/stsa.binary.dev|"
                   f"test:{d}/stsa.binary.test,format=fasttext,label_prefix=")  # fmt: skip
    train, test = sst.load("train"), sst.load("test")
    assert sst.label_names == ("0", "1") and len(train) == 6920 and len(test) == 1821
    assert sum(e.label == 0 for e in train) == 3310 and sum(e.label == 0 for e in test) == 912
    assert train[0].text == "a stirring , funny and finally transporting re-imagining of beauty " \
                            "and the beast and 1930s horror films"  # fmt: skip


def test_files_in_another_encoding_by_encoding_and_named_without_it(tmp_path, monkeypatch):
    """A CSV that Excel on Windows saved as plain "CSV" is cp1252: without encoding= its first
    such line is named with the option that reads it; encoding= reads tables, JSON arrays,
    CoNLL, corpora and parallel text; a split saved as "CSV UTF-8" (with its byte-order mark)
    stays UTF-8 beside it; UTF-16 and unknown encodings are refused in one line; a --predict
    input line that is not UTF-8 is named at its line, stdin's too."""
    import io
    import sys

    from jaxtl.data.io import text_lines

    (tmp_path / "train.csv").write_bytes(
        "text,label\ngood\u2019s café,pos\nbad,neg\n".encode("cp1252")
    )
    (tmp_path / "dev.csv").write_bytes("\ufefftext,label\nnaïve,pos\n".encode("utf-8"))
    with pytest.raises(DataError, match=r"train.csv:2: invalid UTF-8 at byte 4 of the line "
                                        r"\(not UTF-8: encoding=cp1252 reads a file saved by "
                                        r"Excel on Windows"):  # fmt: skip
        get_task(f"file:name=c,path={tmp_path}/{{split}}.csv")
    task = get_task(f"file:name=c,path={tmp_path}/{{split}}.csv,encoding=cp1252")
    assert [e.text for e in task.load("train")] == ["good\u2019s café", "bad"]
    assert [e.text for e in task.load("dev")] == ["naïve"]  # its BOM says UTF-8
    (tmp_path / "a.json").write_bytes('[{"text": "déjà vu", "label": "pos"}]'.encode("latin-1"))
    with pytest.raises(DataError, match=r"a.json:1: invalid UTF-8 at byte 12 of the line"):
        get_task(f"file:name=j,path={tmp_path}/a.json").load("train")
    assert get_task(f"file:name=j,path={tmp_path}/a.json,encoding=latin-1").load("train")[
        0].text == "déjà vu"  # fmt: skip
    (tmp_path / "t.conll").write_bytes("Zürich B-LOC\nist O\n".encode("latin-1"))
    tagged = get_task(f"file:name=n,path={tmp_path}/t.conll,encoding=latin-1").load("train")
    assert tagged[0].words == ("Zürich", "ist")
    (tmp_path / "c.txt").write_bytes("Grüße\n".encode("latin-1"))
    corpus = get_task(f"file:name=l,path={tmp_path}/c.txt,kind=lm,encoding=latin-1")
    assert [e.text for e in corpus.load("train")] == ["Grüße"]
    (tmp_path / "p.en").write_text("greetings\n")
    (tmp_path / "p.de").write_bytes("Grüße\n".encode("latin-1"))
    mt = get_task(f"file:name=m,path={tmp_path}/p.{{lang}},text=en,target=de,encoding=latin-1")
    assert [(e.text, e.target) for e in mt.load("train")] == [("greetings", "Grüße")]
    (tmp_path / "u.csv").write_bytes("text,label\ngood,pos\n".encode("utf-16"))
    with pytest.raises(DataError, match=r"u.csv: the file is UTF-16 .*save it as UTF-8"):
        get_task(f"file:name=u,path={tmp_path}/u.csv")
    with pytest.raises(ValueError, match=r"encoding=utf-16 is not read a line at a time"):
        get_task(f"file:name=u,path={tmp_path}/u.csv,encoding=utf-16")
    with pytest.raises(ValueError, match=r"encoding='klingon' is not an encoding Python knows"):
        get_task(f"file:name=u,path={tmp_path}/train.csv,encoding=klingon")
    (tmp_path / "in.txt").write_bytes(b"fine\ncaf\xe9\n")
    with pytest.raises(DataError, match=r"in.txt:2: invalid UTF-8 at byte 3 of the line \(not "
                                        r"UTF-8: convert it"):  # fmt: skip
        list(text_lines(str(tmp_path / "in.txt")))
    stdin = io.TextIOWrapper(io.BytesIO(b"caf\xe9\n"))
    monkeypatch.setattr(sys, "stdin", stdin)
    with pytest.raises(DataError, match=r"<stdin>:1: invalid UTF-8 at byte 3"):
        list(text_lines("-"))


def test_multilabel_cells_split_at_another_separator_are_warned(tmp_path, caplog):
    """A multilabel file whose cells list classes with ';' read under the default label_sep=,
    makes 'sport;money' a class of its own, every text with one class: the reader warns with
    the label_sep= that splits them; nothing is said when the cells split, or are split."""
    (tmp_path / "t.tsv").write_text("text\ttopics\nthe team bought a player\tsport;money\n"
                                    "the match\tsport\nstocks fell\tmoney\n")  # fmt: skip
    (tmp_path / "c.tsv").write_text("text\ttopics\nthe team bought a player\tsport,money\n"
                                    "one;two\tsport\n")  # fmt: skip
    base = "file:name=m,text=text,label=topics,kind=multilabel,path="
    with caplog.at_level("WARNING", logger="jaxtl.data.files"):
        assert get_task(base + str(tmp_path / "t.tsv")).label_names == (
            "money", "sport", "sport;money")  # fmt: skip
    assert "1 class names hold ';' ('sport;money'): if a cell " \
        "lists several classes, label_sep=; splits them (now ',')" in caplog.text  # fmt: skip
    caplog.clear()
    with caplog.at_level("WARNING", logger="jaxtl.data.files"):
        assert get_task(base + str(tmp_path / "t.tsv") + ",label_sep=;").label_names == (
            "money", "sport")  # fmt: skip
        assert get_task(base + str(tmp_path / "c.tsv")).label_names == ("money", "sport")
    assert "label_sep" not in caplog.text


def test_bioes_tags_in_json_and_tables_read_as_iob2_spans(tmp_path):
    """A tagging JSONL or TSV with BIOES tags (given by name or as ids of a BIOES label_names)
    reads as IOB2, the task's tag set IOB2 too, so span F1 scores the same entities as the
    CoNLL reader does; a plain tag set stays as it is."""
    rows = [(["Anna", "flew", "to", "New", "York"], ["S-PER", "O", "O", "B-LOC", "E-LOC"]),
            (["Rio"], ["S-LOC"])]  # fmt: skip
    (tmp_path / "t.jsonl").write_text("".join(json.dumps({"tokens": w, "tags": t}) + "\n"
                                              for w, t in rows))  # fmt: skip
    (tmp_path / "t.tsv").write_text("tokens\ttags\n" + "".join(
        f"{' '.join(w)}\t{' '.join(t)}\n" for w, t in rows))  # fmt: skip
    names = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]
    (tmp_path / "ids.jsonl").write_text("".join(json.dumps(
        {"tokens": w, "tags": [names.index(x) for x in t]}) + "\n" for w, t in rows))  # fmt: skip
    want = [("B-PER", "O", "O", "B-LOC", "I-LOC"), ("B-LOC",)]
    for f in ("t.jsonl", "t.tsv"):
        task = get_task(f"file:name=n,path={tmp_path / f},kind=tagging,text=tokens,label=tags")
        assert task.label_names == ("O", "B-LOC", "I-LOC", "B-PER", "I-PER") and task.iob
        assert [e.label for e in task.load("train")] == want and task.tag_scheme == "bioes"
    by_id = get_task(f"file:name=n,path={tmp_path / 'ids.jsonl'},kind=tagging,text=tokens,"
                     f"label=tags,label_names={'|'.join(names)}")  # fmt: skip
    assert by_id.label_names == ("O", "B-PER", "I-PER", "B-LOC", "I-LOC") and by_id.iob
    assert [e.label for e in by_id.load("train")] == want
    (tmp_path / "pos.jsonl").write_text(json.dumps({"tokens": ["a"], "tags": ["DET"]}) + "\n")
    pos = get_task(f"file:name=p,path={tmp_path / 'pos.jsonl'},kind=tagging,text=tokens,label=tags")
    assert pos.label_names == ("DET",) and not pos.iob


def test_a_classification_train_split_of_one_class_is_warned(tmp_path, caplog):
    """Every train label the same (a constant column named by label=) trains a classifier
    that learns nothing: the file and hf readers warn in one line; label_names= with the
    classes says nothing."""
    (tmp_path / "t.tsv").write_text("text\tlabel\ngood\tpos\nfine\tpos\n")
    (tmp_path / "t.jsonl").write_text('{"text": "good", "label": "pos"}\n' * 2)
    with caplog.at_level("WARNING"):
        get_task(f"file:name=o,path={tmp_path / 't.tsv'}")
        get_task(f"hf:name=o,path={tmp_path / 't.jsonl'}")
    said = [r.getMessage() for r in caplog.records if "learns nothing" in r.getMessage()]
    assert len(said) == 2
    assert said[0].startswith(f"{tmp_path / 't.tsv'}: every label (column 'label') is 'pos'")
    assert said[1].startswith(f"{tmp_path / 't.jsonl'} (train): every label")
    caplog.clear()
    with caplog.at_level("WARNING"):
        named = get_task(f"file:name=o,path={tmp_path / 't.tsv'},label_names=neg|pos")
    assert [e.label for e in named.load("train")] == [1, 1] and "learns nothing" not in caplog.text


def test_whole_number_labels_keep_their_numbers_as_ids_and_float_classes_are_warned(
    tmp_path, caplog
):
    """Labels 0-11 sorted as strings gave class id 2 to label '10' (in id2label, the
    probability columns, an exported model's logits); whole numbers now sort by value, as
    transformers' run_classification sorts an int column, in the file and hf readers and for
    fastText's __label__N. A class column written as floats (0.0/1.0: pandas with a missing
    cell) still reads as regression, as run_classification does, but is warned."""
    rows = "".join(f"t{i},{i}\n" for i in (3, 11, 0, 10, 1, 2, 4, 5, 6, 7, 8, 9))
    (tmp_path / "n.csv").write_text("text,label\n" + rows)
    numbers = tuple(str(i) for i in range(12))
    assert get_task(f"file:name=n,path={tmp_path / 'n.csv'}").label_names == numbers
    assert get_task(f"hf:name=n,path={tmp_path / 'n.csv'}").label_names == numbers
    (tmp_path / "n.ft.txt").write_text("".join(f"__label__{i} t{i}\n" for i in (10, 2, 1)))
    assert get_task(f"file:name=f,path={tmp_path / 'n.ft.txt'},format=fasttext").label_names == (
        "1", "2", "10")  # fmt: skip
    (tmp_path / "m.csv").write_text("text,label\na,-2\nb,-10\nc,x\nd,b10\ne,b9\n")
    mixed = ("-10", "-2", "b10", "b9", "x")  # not all numbers: as strings
    assert get_task(f"file:name=m,path={tmp_path / 'm.csv'}").label_names == mixed
    (tmp_path / "f.csv").write_text("text,label\na,0.0\nb,1.0\nc,1.0\n")
    (tmp_path / "s.csv").write_text("text,label\na,0.0\nb,1.5\nc,4.0\n")
    with caplog.at_level("WARNING"):
        assert get_task(f"file:name=f,path={tmp_path / 'f.csv'}").kind == "regression"
        assert get_task(f"hf:name=f,path={tmp_path / 'f.csv'}").kind == "regression"
        assert get_task(f"file:name=s,path={tmp_path / 's.csv'}").kind == "regression"
    said = [r.getMessage() for r in caplog.records if "written as a float" in r.getMessage()]
    warned = (f"{tmp_path / 'f.csv'}: every label in column 'label' is one of 0.0, 1.0, written "
              "as a float, so the task trains as regression; kind=classification reads them as "
              "2 classes")  # fmt: skip
    assert said == [warned] * 2  # the file and hf readers; the real scores of s.csv say nothing
    classes = get_task(f"file:name=f,path={tmp_path / 'f.csv'},kind=classification")
    assert classes.label_names == ("0.0", "1.0")
    assert [e.label for e in classes.load("train")] == [0, 1, 1]


def test_a_split_streams_row_by_row_the_same_examples_load_gives(tmp_path):
    """``iterate`` reads a file task's split a row at a time (a file larger than memory trains
    through the token cache and predicts): its first examples come before a bad row further
    down is reached, where ``load`` reads the whole file and stops on it; on a sound file the
    two give the same examples, unlabelled splits and JSON lines included."""
    rows = "".join(f"s{i}\ttext {i}\t{'pos' if i % 2 else 'neg'}\n" for i in range(50))
    (tmp_path / "train.tsv").write_text("id\tsentence\tlabel\n" + rows + "s50\tbroken\n")
    task = get_task(f"file:name=t,path={tmp_path}/train.tsv,text=sentence,label_names=neg|pos")
    stream = task.iterate("train")
    first = [next(stream) for _ in range(3)]
    assert [(e.text, e.label, e.id) for e in first] == [("text 0", 0, "s0"), ("text 1", 1, "s1"),
                                                        ("text 2", 0, "s2")]  # fmt: skip
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'train.tsv'}:52: expected 3")):
        list(stream)
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'train.tsv'}:52: expected 3")):
        task.load("train")
    (tmp_path / "train.tsv").write_text("id\tsentence\tlabel\n" + rows)
    (tmp_path / "test.tsv").write_text("sentence\tlabel\nfine\t\nmeh\t\n")
    (tmp_path / "test.jsonl").write_text(
        '{"sentence": "ok", "id": 6}\n{"sentence": "fine", "id": 7}\n'
    )
    for spec in (f"file:name=t,path={tmp_path}/{{split}}.tsv,text=sentence",
                 f"file:name=t,paths=train:{tmp_path}/train.tsv|test:{tmp_path}/test.jsonl,"
                 "text=sentence"):  # fmt: skip
        task = get_task(spec)
        for split in task.splits:
            assert list(task.iterate(split)) == list(task.load(split)), (spec, split)
    js = get_task(f"file:name=t,paths=train:{tmp_path}/train.tsv|test:{tmp_path}/test.jsonl,"
                  "text=sentence")  # fmt: skip
    assert [(e.label, e.id) for e in js.iterate("test")] == [(None, 6), (None, 7)]
