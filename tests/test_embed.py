"""Sentence embeddings (``jaxtl --embed``, :mod:`jaxtl.embed`): the packaged sentence-transformers
MiniLM gives ``SentenceTransformer.encode``'s vectors; every representation and pooling equals
transformers' hidden states pooled by hand; packed rows equal one input per row; a finished
run's selected encoder is the one embedded; outputs and bad input from the command line.
Tolerance: 1e-5 absolute (fp32)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import minilm_dir

from jaxtl import embed
from jaxtl.data import DataError

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
TOL = 1e-5
SENTENCES = [
    "A man is playing a guitar.",
    "The weather is lovely today.",
    "A woman slices an onion on a wooden board in the kitchen while the radio plays old songs.",
    "it 's a charming and often affecting journey .",
    # longer than the folder's max_seq_length (256 tokens): cut there, as sentence-transformers does
    " ".join(["the film drags on and on"] * 60),
]


@pytest.fixture(scope="module")
def minilm():
    return embed.embedder("minilm")


def test_the_packaged_minilm_gives_sentence_transformers_vectors(minilm):
    st = pytest.importorskip("sentence_transformers")
    assert (minilm.pooling, minilm.normalize, minilm.max_length) == ("mean", True, 256)
    ref = st.SentenceTransformer(str(minilm_dir()), device="cpu").encode(SENTENCES)
    got = minilm.embed(SENTENCES)
    assert got.shape == (len(SENTENCES), 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=TOL, rtol=0)


def test_packed_rows_give_the_vectors_of_one_input_per_row(minilm):
    packed = minilm.embed(SENTENCES + SENTENCES[:2])
    minilm.packed = False
    try:
        alone = minilm.embed(SENTENCES + SENTENCES[:2])
    finally:
        minilm.packed = True
    np.testing.assert_allclose(packed, alone, atol=TOL, rtol=0)


@pytest.mark.parametrize(
    ("representation", "pooling"),
    [
        ("second_to_last", "cls"),
        ("concat_last_four", "mean"),
        ("embeddings", "last"),
        ("sum_last_four", "mean"),
    ],  # fmt: skip
)
def test_each_representation_and_pooling_is_transformers_hidden_states_pooled(
    representation, pooling
):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    e = embed.embedder("minilm", settings=embed.Settings(representation, pooling, False))
    tok = transformers.AutoTokenizer.from_pretrained(str(minilm_dir()))
    model = transformers.AutoModel.from_pretrained(str(minilm_dir())).eval()
    batch = tok(SENTENCES[:4], padding=True, return_tensors="pt")
    with torch.no_grad():
        hs = [h.numpy() for h in model(**batch, output_hidden_states=True).hidden_states]
    rep = {"second_to_last": hs[-2], "concat_last_four": np.concatenate(hs[-4:], -1),
           "embeddings": hs[0], "sum_last_four": sum(hs[-4:])}[representation]  # fmt: skip
    mask = batch["attention_mask"].numpy().astype(bool)
    want = []
    for r in range(len(rep)):
        real = rep[r][mask[r]]
        want.append({"cls": real[0], "mean": real.mean(0), "last": real[-1]}[pooling])
    got = e.embed(SENTENCES[:4])
    assert got.shape[1] == (4 * 384 if representation == "concat_last_four" else 384)
    np.testing.assert_allclose(got, np.stack(want), atol=TOL, rtol=0)


def test_the_package_level_embedder_is_the_same():
    import jaxtl

    e = jaxtl.embedder("minilm", settings=embed.Settings(pooling="cls", normalize=False))
    assert (e.pooling, e.normalize) == ("cls", False)


def test_sentence_pairs_embed_as_one_input(minilm):
    pairs = [("A man plays.", "Someone makes music."), ("It rains.", "The sun shines.")]
    got = minilm.embed(pairs)
    assert got.shape == (2, 384)
    assert not np.allclose(got[0], minilm.embed([pairs[0][0]])[0], atol=1e-3)
    with pytest.raises(ValueError, match="mix single texts and"):
        minilm.embed(["one", ("two", "three")])


def _launch(*args, input=None):
    return subprocess.run([sys.executable, str(REPO / "launch.py"), *args], cwd=REPO,
                          input=input, capture_output=True, text=True, timeout=600)  # fmt: skip


def test_a_finished_runs_selected_encoder_is_embedded(tmp_path, minilm):
    """--workdir: the run's selected params, not the pretrained ones: the same vectors as its
    exported encoder (a plain HF folder) embedded as a model."""
    wd = tmp_path / "run"
    p = _launch("--regime=multitask", "--config=configs/multitask.py:tiny", f"--workdir={wd}",
                "--config.train.steps=12", "--config.optim.lr=1e-3",
                f"--config.export_dir={tmp_path / 'exp'}")  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    ours = embed.embedder(workdir=str(wd))  # minilm's own pooling: mean, normalised
    assert (ours.pooling, ours.normalize, ours.max_length) == ("mean", True, 256)
    exported = embed.embedder(str(tmp_path / "exp"),
                              settings=embed.Settings(pooling="mean", normalize=True))  # fmt: skip
    a, b = ours.embed(SENTENCES[:3]), exported.embed(SENTENCES[:3])
    np.testing.assert_allclose(a, b, atol=TOL, rtol=0)
    assert np.abs(a - minilm.embed(SENTENCES[:3])).max() > 1e-3  # trained: not the pretrained


def test_the_command_writes_npy_parquet_and_json_lines(tmp_path):
    pd = pytest.importorskip("pandas")
    (tmp_path / "in.txt").write_text("A cat sat.\n\nA dog ran.\n")
    (tmp_path / "pairs.jsonl").write_text(
        json.dumps({"text": "A cat sat.", "text_pair": "It sat."}) + "\n"
        + json.dumps({"text": "A dog ran."}) + "\n"
    )  # fmt: skip
    p = _launch("--embed", "--model=minilm", f"--input={tmp_path / 'in.txt'}",
                f"--output={tmp_path / 'e.npy'}")  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    assert "2 embeddings (representation=last pooling=mean normalize=True" in p.stdout
    vecs = np.load(tmp_path / "e.npy")
    assert vecs.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    p = _launch("--embed", "--model=minilm", "--input=-", "--normalize=false", "--pooling=cls",
                input="A cat sat.\n")  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    rec = json.loads(p.stdout.splitlines()[0])
    assert rec["id"] == 0 and rec["text"] == "A cat sat." and len(rec["embedding"]) == 384
    assert abs(float(np.linalg.norm(rec["embedding"])) - 1.0) > 1e-3  # not normalised
    # a mixed file of pairs and single texts is refused; pairs alone go to Parquet
    p = _launch("--embed", "--model=minilm", f"--input={tmp_path / 'pairs.jsonl'}",
                f"--output={tmp_path / 'p.parquet'}")  # fmt: skip
    assert p.returncode != 0 and "mix single texts and" in p.stderr
    (tmp_path / "pairs.jsonl").write_text(
        json.dumps({"text": "A cat sat.", "text_pair": "It sat."}) + "\n"
    )
    p = _launch("--embed", "--model=minilm", f"--input={tmp_path / 'pairs.jsonl'}",
                f"--output={tmp_path / 'p.parquet'}")  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    table = pd.read_parquet(tmp_path / "p.parquet")
    assert list(table.columns) == ["id", "text", "text_pair", "embedding"]
    assert table["text_pair"][0] == "It sat." and len(table["embedding"][0]) == 384


def test_outputs_are_written_a_chunk_at_a_time_and_read_back_whole(minilm, tmp_path, monkeypatch):
    """With chunks of 2 inputs, each format still holds every input once, in order, with the
    vectors :meth:`Embedder.embed` gives for the whole input."""
    pd = pytest.importorskip("pandas")
    monkeypatch.setattr(embed, "CHUNK", 2)
    (tmp_path / "in.txt").write_text("\n".join(SENTENCES[:4]) + "\n")
    want = minilm.embed(SENTENCES[:4])
    for name in ("e.npy", "e.parquet", "e.jsonl", "e.json"):
        assert embed.embed_command(minilm, str(tmp_path / "in.txt"), str(tmp_path / name)) == 4
    np.testing.assert_allclose(np.load(tmp_path / "e.npy"), want, atol=TOL, rtol=0)
    table = pd.read_parquet(tmp_path / "e.parquet")
    assert list(table["id"]) == [0, 1, 2, 3] and list(table["text"]) == SENTENCES[:4]
    np.testing.assert_allclose(np.stack(table["embedding"]), want, atol=TOL, rtol=0)
    recs = [json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert [r["id"] for r in recs] == [0, 1, 2, 3]
    np.testing.assert_allclose([r["embedding"] for r in recs], want, atol=TOL, rtol=0)
    assert json.loads((tmp_path / "e.json").read_text()) == recs  # .json: one array of them
    # The input is read a chunk at a time too, twice: once to count and check it (a bad line at
    # its end stops the command before the model runs), once to embed it; rows with ids of
    # their own beside numbered ones give one column type, as a whole read did.
    rows = [{"text": t} | ({"id": f"r{i}"} if i % 2 else {}) for i, t in enumerate(SENTENCES[:4])]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ran = []
    real = embed.Embedder.embed_stream
    monkeypatch.setattr(embed.Embedder, "embed_stream",
                        lambda self, x: ran.append(len(list(x))) or real(self, x))  # fmt: skip
    assert embed.embed_command(minilm, str(tmp_path / "in.jsonl"), str(tmp_path / "i.jsonl")) == 4
    assert ran == [2, 2]  # a chunk at a time
    recs = [json.loads(x) for x in (tmp_path / "i.jsonl").read_text().splitlines()]
    assert [r["id"] for r in recs] == ["0", "r1", "2", "r3"]
    np.testing.assert_allclose([r["embedding"] for r in recs], want, atol=TOL, rtol=0)
    ran.clear()
    (tmp_path / "bad.jsonl").write_text((tmp_path / "in.jsonl").read_text() + '{"text": 3}\n')
    with pytest.raises(Exception, match=r"bad\.jsonl:5"):
        embed.embed_command(minilm, str(tmp_path / "bad.jsonl"), str(tmp_path / "b.npy"))
    assert ran == [] and not (tmp_path / "b.npy").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input=-"], "give one of --model"),
        (["--model=minilm", "--input=-", "--pooling=max"], "--pooling=max: choose one of mean"),
        (["--model=minilm", "--input=/nope.txt"], "--input=/nope.txt: no such file"),
        (["--model=minilm", "--input=-", "--representation=top"], "--representation=top: choose"),
        (["--model=minilm", "--input=-", "--max_length=9999"], "positions reach 512 tokens"),
    ],  # fmt: skip
)
def test_bad_options_stop_in_one_line(args, message):
    p = _launch("--embed", *args, input="A cat sat.\n")
    assert p.returncode != 0 and message in p.stderr, p.stderr[-1000:]
    assert len(p.stderr.strip().splitlines()) == 1


def test_a_bad_json_line_is_named(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"text": "ok"}\n{"txt": "typo"}\n')
    with pytest.raises(DataError, match=r"x.jsonl:2: expected an object with a string 'text'"):
        list(embed.read_inputs(str(tmp_path / "x.jsonl")))
    # one JSON array of the same objects: read element by element, named by line
    (tmp_path / "x.json").write_text('[{"text": "ok"},\n {"text": "a", "text_pair": "b"}]\n')
    assert list(embed.read_inputs(str(tmp_path / "x.json"))) == [
        ("ok", f"{tmp_path / 'x.json'}:1", None),
        (("a", "b"), f"{tmp_path / 'x.json'}:2", None)]  # fmt: skip


def test_a_tables_named_column_is_embedded_with_its_ids(minilm, tmp_path):
    """A CSV/TSV/Parquet input is a table, not lines (its header and labels are no texts):
    its ``text`` column, or the one --text_column names, is embedded, with --text_pair_column
    as a pair; its ``id`` column gives the records' ids; a missing column is named with the
    header before the model loads."""
    pd = pytest.importorskip("pandas")
    rows = pd.DataFrame({"id": ["a1", "b2", "c3"], "review": SENTENCES[:3],
                         "other": SENTENCES[2:5], "label": ["pos", "neg", "pos"]})  # fmt: skip
    rows.to_csv(tmp_path / "r.csv", index=False)
    rows.to_csv(tmp_path / "r.tsv", index=False, sep="\t")
    rows.to_parquet(tmp_path / "r.parquet")
    want = minilm.embed(SENTENCES[:3])
    for name in ("r.csv", "r.tsv", "r.parquet"):
        got = list(embed.read_inputs(str(tmp_path / name), text_column="review"))
        assert [(x, i) for x, _, i in got] == list(zip(SENTENCES[:3], ["a1", "b2", "c3"]))
    pairs = list(embed.read_inputs(str(tmp_path / "r.csv"), "auto", "review", "other"))
    assert [x for x, _, _ in pairs] == list(zip(SENTENCES[:3], SENTENCES[2:5]))
    assert embed.embed_command(minilm, str(tmp_path / "r.csv"), str(tmp_path / "e.parquet"),
                               text_column="review") == 3  # fmt: skip
    table = pd.read_parquet(tmp_path / "e.parquet")
    assert list(table["id"]) == ["a1", "b2", "c3"] and list(table["text"]) == SENTENCES[:3]
    np.testing.assert_allclose(np.stack(table["embedding"]), want, atol=TOL, rtol=0)
    with pytest.raises(DataError, match=r"r.csv: no column 'text' in header \['id', 'review', "
                                        r"'other', 'label'\]; --text_column names the column"):  # fmt: skip
        list(embed.read_inputs(str(tmp_path / "r.csv")))
    with pytest.raises(ValueError, match=r"lines input is a text a line"):
        list(embed.read_inputs(str(tmp_path / "r.csv"), "lines", "review"))
    (tmp_path / "k.jsonl").write_text('{"review": "fine", "id": 7}\n{"review": "dull"}\n')
    assert [(x, i) for x, _, i in embed.read_inputs(str(tmp_path / "k.jsonl"), "auto", "review")
            ] == [("fine", 7), ("dull", None)]  # fmt: skip
    p = _launch("--embed", "--model=/nope/not/a/model", f"--input={tmp_path / 'r.csv'}")
    assert p.returncode != 0 and "no column 'text' in header" in p.stderr  # before the model


def st_modules():
    """sentence-transformers' module classes (their home moved in version 6)."""
    pytest.importorskip("sentence_transformers")
    try:
        from sentence_transformers.sentence_transformer import modules as m
    except ImportError:  # before version 6
        from sentence_transformers import models as m
    return m.Transformer, m.Pooling, m.Dense, m.Normalize


def st_folder(path, transformer_dir, projections) -> str:
    """A sentence-transformers folder saved by the installed library: ``transformer_dir``'s
    model, mean pooling, ``projections`` (Dense modules), Normalize."""
    st = pytest.importorskip("sentence_transformers")

    Transformer, Pooling, _, Normalize = st_modules()
    t = Transformer(str(transformer_dir))
    width = getattr(t, "get_embedding_dimension", None) or t.get_word_embedding_dimension
    modules = [t, Pooling(width(), pooling_mode="mean"), *projections, Normalize()]
    st.SentenceTransformer(modules=modules, device="cpu").save(str(path))
    return str(path)


def test_a_folder_with_dense_projections_gives_sentence_transformers_vectors(tmp_path, minilm):
    """LaBSE's and EmbeddingGemma's folders project the pooled vector (Dense modules) before
    Normalize: here a Dense with bias and Tanh, then one without bias, GELU and a residual,
    saved in sentence-transformers' current layout (its Pooling config says
    ``"pooling_mode": "mean"``; the packaged MiniLM's the older flags). ``--dense=false`` leaves
    them out; a representation of another width is refused."""
    st = pytest.importorskip("sentence_transformers")

    torch = pytest.importorskip("torch")
    _, _, Dense, _ = st_modules()
    torch.manual_seed(0)
    folder = st_folder(tmp_path / "st", minilm_dir(), [
        Dense(384, 48, activation_function=torch.nn.Tanh()),
        Dense(48, 48, bias=False, activation_function=torch.nn.GELU(), use_residual=True),
    ])  # fmt: skip
    e = embed.embedder(folder)
    assert (e.pooling, e.normalize, e.dim, len(e.dense)) == ("mean", True, 48, 2)
    ref = st.SentenceTransformer(folder, device="cpu").encode(SENTENCES)
    np.testing.assert_allclose(e.embed(SENTENCES), ref, atol=TOL, rtol=0)
    plain = embed.embedder(folder, settings=embed.Settings(dense=False))
    assert plain.dim == 384  # (the packaged folder cuts at 256 tokens, this one at 512)
    np.testing.assert_allclose(plain.embed(SENTENCES[:4]), minilm.embed(SENTENCES[:4]), atol=TOL,
                               rtol=0)  # fmt: skip
    with pytest.raises(ValueError, match=r"concat_last_four gives 1536 features; the folder's "
                                         r".*2_Dense projects 384 \(--dense=false"):  # fmt: skip
        embed.embedder(folder, settings=embed.Settings(representation="concat_last_four"))


def test_a_sentence_transformers_module_jaxtl_does_not_run_is_named(tmp_path):
    folder = tmp_path / "st"
    folder.mkdir()
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_LayerNorm", "type": "sentence_transformers.models.LayerNorm"},
    ]))  # fmt: skip
    with pytest.raises(ValueError, match=r"modules \['Transformer', 'Pooling', 'LayerNorm'\]: "
                                         r"jaxtl runs Transformer -> Pooling -> Dense -> Normalize"):  # fmt: skip
        embed.sentence_transformers_defaults(folder)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode": "mean"}')
    (folder / "2_Dense").mkdir()
    (folder / "2_Dense" / "config.json").write_text(json.dumps(
        {"in_features": 4, "out_features": 2, "activation_function": "mypackage.Swish"}))  # fmt: skip
    modules = json.loads((folder / "modules.json").read_text())
    modules[2] = {
        "idx": 2,
        "name": "2",
        "path": "2_Dense",
        "type": "sentence_transformers.models.Dense",
    }
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match=r"2_Dense/config.json: activation_function "
                                         r"'mypackage.Swish' is not one jaxtl runs"):  # fmt: skip
        embed.sentence_transformers_defaults(folder)


def test_a_folder_saved_by_sentence_transformers_6_keeps_its_max_seq_length(tmp_path):
    """sentence-transformers >= 6 keeps a folder's max_seq_length as the tokenizer's
    model_max_length, not in sentence_bert_config.json: inputs are cut there all the same."""
    st = pytest.importorskip("sentence_transformers")

    Transformer, _, _, _ = st_modules()
    folder = st_folder(tmp_path / "st", minilm_dir(), [])
    model = st.SentenceTransformer(folder, device="cpu")
    model.max_seq_length = 12
    model.save(folder)
    e = embed.embedder(folder)
    assert e.max_length == 12
    ref = st.SentenceTransformer(folder, device="cpu").encode(SENTENCES)
    np.testing.assert_allclose(e.embed(SENTENCES), ref, atol=TOL, rtol=0)


def test_a_folders_prompts_go_before_the_texts_as_in_sentence_transformers(tmp_path):
    """E5's, EmbeddingGemma's and Qwen3-Embedding's folders name prompts (config_sentence_
    transformers.json); encode() puts the default one before every text unless told another
    (``prompt_name``) or a text of one's own (``prompt``): so does ``--embed``."""
    st = pytest.importorskip("sentence_transformers")

    folder = st_folder(tmp_path / "st", minilm_dir(), [])
    model = st.SentenceTransformer(folder, device="cpu", default_prompt_name="query",
                                   prompts={"query": "query: ", "document": "passage: "})  # fmt: skip
    model.save(folder)
    ref = st.SentenceTransformer(folder, device="cpu")
    texts = SENTENCES[:4]
    e = embed.embedder(folder)
    assert e.prompt == "query: "
    np.testing.assert_allclose(e.embed(texts), ref.encode(texts), atol=TOL, rtol=0)
    doc = embed.embedder(folder, settings=embed.Settings(prompt_name="document"))
    np.testing.assert_allclose(doc.embed(texts), ref.encode(texts, prompt_name="document"),
                               atol=TOL, rtol=0)  # fmt: skip
    own = embed.embedder(folder, settings=embed.Settings(prompt="Represent this: "))
    np.testing.assert_allclose(own.embed(texts), ref.encode(texts, prompt="Represent this: "),
                               atol=TOL, rtol=0)  # fmt: skip
    assert not np.allclose(doc.embed(texts), e.embed(texts), atol=1e-3)
    with pytest.raises(ValueError, match=r"--prompt_name=passage: .*config_sentence_transformers"
                                         r".json names the prompts \['document', 'query'\]"):  # fmt: skip
        embed.embedder(folder, settings=embed.Settings(prompt_name="passage"))


def test_a_folder_that_lowercases_its_texts_is_read_so(tmp_path):
    """``do_lower_case`` in sentence_bert_config.json: sentence-transformers lowercases every
    text before a cased tokenizer sees it (here a cased one: the byte-level BPE)."""
    st = pytest.importorskip("sentence_transformers")

    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from test_family_llama import TINY, byte_level_tokenizer

    tok = byte_level_tokenizer()
    tok.pad_token = "</s>"
    base = tmp_path / "base"
    torch.manual_seed(0)
    transformers.LlamaModel(transformers.LlamaConfig(**dict(TINY, vocab_size=len(tok),
                                                           max_position_embeddings=128))
                            ).save_pretrained(base)  # fmt: skip
    tok.save_pretrained(base)
    Transformer, Pooling, _, _ = st_modules()
    t = Transformer(str(base), do_lower_case=True)
    folder = str(tmp_path / "st")
    st.SentenceTransformer(modules=[t, Pooling(32, pooling_mode="mean")], device="cpu").save(folder)
    texts = ["Alice met Bob in Paris", "THE FILM WAS GREAT"]
    # sentence-transformers 6 bakes the lowercasing into the saved tokenizer's normalizer
    ref = st.SentenceTransformer(folder, device="cpu").encode(texts)
    np.testing.assert_allclose(embed.embedder(folder).embed(texts), ref, atol=TOL, rtol=0)
    # earlier versions say do_lower_case beside a tokenizer that does not lowercase
    (tmp_path / "st" / "tokenizer.json").write_text((base / "tokenizer.json").read_text())
    config = tmp_path / "st" / "sentence_bert_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "do_lower_case": True}))
    e = embed.embedder(folder)
    assert e.lower_case
    ref = st.SentenceTransformer(folder, device="cpu").encode(texts)
    np.testing.assert_allclose(e.embed(texts), ref, atol=TOL, rtol=0)
    cased = embed.embedder(str(base)).embed(texts)  # the same model, texts as they are
    assert not np.allclose(e.embed(texts), cased, atol=1e-3)


def test_a_folder_in_the_older_layout_reads_its_model_from_its_first_modules_folder(tmp_path):
    """sentence-transformers before version 2 kept the model, its tokenizer and
    sentence_bert_config.json in ``0_Transformer/``, with ``modules.json`` above: jaxtl loads
    the model from there and reads the folder's settings (here a 16-token limit) all the same;
    a training run can start from such a folder too."""
    import shutil

    st = pytest.importorskip("sentence_transformers")

    from jaxtl.models import hf

    root = tmp_path / "st"
    shutil.copytree(minilm_dir(), root)
    inner = root / "0_Transformer"
    inner.mkdir()
    for f in list(root.iterdir()):
        if f.is_file() and f.name not in ("modules.json", "config_sentence_transformers.json"):
            f.rename(inner / f.name)
    (inner / "sentence_bert_config.json").write_text('{"max_seq_length": 16}')
    modules = json.loads((root / "modules.json").read_text())
    modules[0]["path"] = "0_Transformer"
    (root / "modules.json").write_text(json.dumps(modules))
    assert hf.resolve(str(root)) == inner
    e = embed.embedder(str(root))
    assert (e.pooling, e.normalize, e.max_length) == ("mean", True, 16)
    ref = st.SentenceTransformer(str(root), device="cpu").encode(SENTENCES)
    np.testing.assert_allclose(e.embed(SENTENCES), ref, atol=TOL, rtol=0)
