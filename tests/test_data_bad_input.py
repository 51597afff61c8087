"""Bad input: each case is an error naming file and line, or with on_bad_row="skip" a counted,
logged skip. Also CoNLL/UD reading rules (IOB1 -> IOB2, CoNLL-U ranges and empty nodes)."""

import logging
import re

import pytest

from jaxtl.data import DataError, get_task


def write(path, text, mode="w"):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def sst(tmp_path, train):
    write(tmp_path / "SST-2" / "train.tsv", "sentence\tlabel\n" + train)
    return get_task("sst2", tmp_path)


def raises_at(file, line):
    return pytest.raises(DataError, match=re.escape(f"{file}:{line}:"))


def test_wrong_field_count(tmp_path):
    f = tmp_path / "SST-2" / "train.tsv"
    with raises_at(f, 3) as e:
        sst(tmp_path, "good one\t1\ntoo\tmany\t1\nfine\t0\n").load("train")
    assert "expected 2 fields, found 3" in str(e.value)


def test_label_outside_set(tmp_path):
    with raises_at(tmp_path / "SST-2" / "train.tsv", 2) as e:
        sst(tmp_path, "good one\t7\n").load("train")
    assert "'7'" in str(e.value)


def test_score_outside_range(tmp_path):
    header = (
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    )
    write(tmp_path / "STS-B" / "train.tsv", header + "0\tg\tf\ty\to\ts\ts\ta\tb\t7.5\n")
    with raises_at(tmp_path / "STS-B" / "train.tsv", 2):
        get_task("stsb", tmp_path).load("train")


def test_empty_file(tmp_path):
    write(tmp_path / "SST-2" / "train.tsv", "")
    with pytest.raises(
        DataError, match=re.escape(f"{tmp_path / 'SST-2' / 'train.tsv'}: file is empty")
    ):
        get_task("sst2", tmp_path, on_bad_row="skip").load("train")


def test_invalid_utf8(tmp_path):
    f = write(tmp_path / "SST-2" / "train.tsv", b"sentence\tlabel\nok\t1\nbad \xff\xfe byte\t0\n")
    with raises_at(f, 3) as e:
        get_task("sst2", tmp_path).load("train")
    assert "invalid UTF-8" in str(e.value)


def test_missing_split_lists_splits(tmp_path):
    write(tmp_path / "SST-2" / "dev.tsv", "sentence\tlabel\nok\t1\n")
    with pytest.raises(DataError, match=r"train.*splits found.*\['dev'\]"):
        get_task("sst2", tmp_path).load("train")
    with pytest.raises(DataError, match=r"no split 'test'.*\['train', 'dev'\]"):
        get_task("sst2", tmp_path).load("test")


def test_skip_counts_and_logs(tmp_path, caplog):
    f = write(
        tmp_path / "SST-2" / "train.tsv",
        b"sentence\tlabel\nok\t1\nbad\t9\nx\ty\tz\n\xff\t0\nfine\t0\n",
    )
    with caplog.at_level(logging.WARNING):
        data = get_task("sst2", tmp_path, on_bad_row="skip").load("train")
    assert [e.text for e in data] == ["ok", "fine"]
    assert data.skipped == 3
    assert [r.split(": ")[0] for r in data.skip_reasons] == [f"{f}:3", f"{f}:4", f"{f}:5"]
    assert "skipped 3 bad rows" in caplog.text and str(f) in caplog.text
    assert data[0].source == f"{f}:2"


CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC
call NN I-NP O

Peter NNP B-NP I-PER
Blackburn NNP I-NP I-PER
"""


def conll(tmp_path, text, **opts):
    write(tmp_path / "conll2003" / "train.txt", text)
    return get_task("conll2003", tmp_path, **opts)


def test_conll_iob1_converted_to_iob2(tmp_path):
    data = conll(tmp_path, CONLL).load("train")
    assert len(data) == 2
    assert data[0].words == ("EU", "rejects", "German", "call")
    assert data[0].label == ("B-ORG", "O", "B-MISC", "O")
    assert data[1].label == ("B-PER", "I-PER")
    f = tmp_path / "conll2003" / "train.txt"
    assert data[1].source == f"{f}:8"


def test_conll_strict_iob2_rejects_i_after_o(tmp_path):
    f = tmp_path / "conll2003" / "train.txt"
    with raises_at(f, 3) as e:
        conll(tmp_path, CONLL, scheme="iob2").load("train")
    assert "I-ORG follows O" in str(e.value)


@pytest.mark.parametrize("tag", ["B-", "X-PER", "PER"])
def test_conll_malformed_tag(tmp_path, tag):
    f = tmp_path / "conll2003" / "train.txt"
    with raises_at(f, 2) as e:
        conll(tmp_path, f"EU NNP B-NP B-ORG\nsays VBZ B-VP {tag}\n").load("train")
    assert repr(tag) in str(e.value)


def test_bioes_and_bilou_tags_read_as_the_same_iob2_spans_and_plain_tags_name_iob0(tmp_path):
    """BIOES (S-/E-) and BILOU (U-/L-) tags, as OntoNotes conversions, Flair and spaCy write
    them, are the same spans in IOB2 (the task's tag set is IOB2 and span F1 scores them);
    strict scheme=iob2 refuses them; plain entity types name iob=0."""
    f = write(tmp_path / "t.conll", "Anna S-PER\nflew O\nto O\nNew B-LOC\nYork E-LOC\n\n"
                                    "Rio U-LOC\nde I-LOC\nJaneiro L-LOC\n")  # fmt: skip
    task = get_task(f"file:name=n,path={f}")
    assert task.label_names == ("O", "B-LOC", "I-LOC", "B-PER", "I-PER") and task.iob
    assert task.tag_scheme == "bioes"  # predictions are written back in it (S- over U-)
    bilou = write(tmp_path / "u.conll", "Rio U-LOC\n\nSao B-LOC\nPaulo L-LOC\n")
    assert get_task(f"file:name=u,path={bilou}").tag_scheme == "bilou"
    assert [e.label for e in task.load("train")] == [
        ("B-PER", "O", "O", "B-LOC", "I-LOC"), ("B-LOC", "I-LOC", "I-LOC")]  # fmt: skip
    with raises_at(f, 1) as e:
        get_task(f"file:name=n,path={f},scheme=iob2").load("train")
    assert "tag 'S-PER' is not IOB2" in str(e.value)
    plain = write(tmp_path / "p.conll", "Anna PER\nflew O\n")
    with raises_at(plain, 1) as e:
        get_task(f"file:name=n,path={plain}").load("train")
    assert "tag 'PER' is not O, B-<type> or I-<type>" in str(e.value)
    assert "iob=0 reads plain tags" in str(e.value)
    assert get_task(f"file:name=n,path={plain},iob=0").label_names == ("O", "PER")


def test_conll_malformed_line_and_unknown_type(tmp_path):
    f = tmp_path / "conll2003" / "train.txt"
    with raises_at(f, 2) as e:
        conll(tmp_path, "EU NNP B-NP B-ORG\nsays B-VP O\n").load("train")
    assert "expected 4 columns, found 3" in str(e.value)
    with raises_at(f, 1):
        conll(tmp_path, "EU NNP B-NP B-FOO\n").load("train")


def test_conll_skip_drops_whole_sentence(tmp_path):
    text = "A DT B-NP O\nb NN I-NP X-Y\n\nPeter NNP B-NP B-PER\n"
    data = conll(tmp_path, text, on_bad_row="skip").load("train")
    assert [e.words for e in data] == [("Peter",)] and data.skipped == 1


CONLLU = """# sent_id = 1
# text = Don't go.
1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_
1\tDo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_
2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_
2.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t3:conj\t_
3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

"""


def test_conllu_ranges_and_empty_nodes_skipped(tmp_path):
    write(tmp_path / "UD" / "en_x-ud-train.conllu", CONLLU)
    data = get_task("ud_pos", tmp_path, folder="UD").load("train")
    assert data[0].words == ("Do", "n't", "go", ".")
    assert data[0].label == ("AUX", "PART", "VERB", "PUNCT")
    bad = CONLLU.replace("PUNCT\t.", "PUNC\t.")
    write(tmp_path / "UD" / "en_x-ud-train.conllu", bad)
    with raises_at(tmp_path / "UD" / "en_x-ud-train.conllu", 8):
        get_task("ud_pos", tmp_path, folder="UD").load("train")
    with pytest.raises(DataError, match=r"dev.*splits found in .*\['train'\]"):
        get_task("ud_pos", tmp_path, folder="UD").load("dev")


def test_generic_conll_columns(tmp_path):
    write(tmp_path / "pos" / "train.txt", "The\tDET\ncat\tNOUN\n\nRuns\tVERB\n")
    task = get_task("conll", tmp_path, path="pos/{split}.txt", delimiter="\t", iob=False)
    assert task.label_names == ("DET", "NOUN", "VERB") and task.metrics == ("token_accuracy",)
    assert [e.label for e in task.load("train")] == [("DET", "NOUN"), ("VERB",)]


def test_a_capped_read_of_a_file_still_stops_at_a_bad_row_past_the_cap(tmp_path):
    """Task.head reads a file whole (only generated tasks make just their first examples), so
    a run capped at two examples still stops at a bad row further down."""
    task = sst(tmp_path, "good one\t1\nfine\t0\nalso fine\t1\nbad\t7\n")
    with raises_at(tmp_path / "SST-2" / "train.tsv", 5):
        task.head("train", 2)
