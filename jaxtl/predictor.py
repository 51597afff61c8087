"""Run a trained model on new text: ``jaxtl.load(workdir).predict([...])`` and
``python launch.py --predict``.

:func:`load` rebuilds the run's model from ``config.json`` and ``tasks.json`` (no training data
needed), loads the *selected* params of each task's stage (``selection.json``: its best dev
evaluation; the last checkpoint when none was kept) and predicts in batches and length buckets.
Records are those of :mod:`jaxtl.predictions` (``label`` + ``probs``, ``score`` or ``tags``).

    >>> predictor = jaxtl.load("runs/mine")                     # doctest: +SKIP
    >>> predictor.predict(["a gripping, funny film"])           # doctest: +SKIP
    [{'id': 0, 'text': 'a gripping, funny film', 'label': 'positive', 'probs': [0.03, 0.97]}]
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from etils import epath
from flax import nnx

from jaxtl import (
    assembly,
    checkpoint,
    fileio,
    metrics,
    objectives,
    predictions,
    runtime,
    thresholds,
)
from jaxtl import config as config_lib
from jaxtl import step as step_lib
from jaxtl import workdir as workdir_lib
from jaxtl.data import batching, packing, tokenize
from jaxtl.data.files import FASTTEXT_PREFIX, fasttext_record
from jaxtl.data.io import (
    column,
    default_id_at,
    extension,
    json_values,
    qa_example,
    row_id,
    table_format,
    table_rows,
    text_lines,
)
from jaxtl.data.prepare import TaskData, configured
from jaxtl.data.spec import COLUMNAR
from jaxtl.data.tasks import SENTENCE_KINDS, BadRows, DataError, Example, Task
from jaxtl.data.words import check_word_split, split_words
from jaxtl.objectives import seq2seq as seq2seq_objective

log = logging.getLogger(__name__)

INPUT_FORMATS = ("auto", "lines", "jsonl", "task", "tsv", "csv")
# --input_format values of a table whose extension does not say so (a .txt CSV): read as the
# task's kind by its own text columns, or --text_column's (Predictor._read_columns)
TABLE_INPUTS = ("tsv", "csv")
# A word that ends a sentence with its full stop, ! or ? attached ("Paris."), as raw text has
# it; CoNLL and UD files, which taggers train on, split it off. "U.S." and "2020." do not match.
_ATTACHED = re.compile(r"^[^\W\d_][^.\s]*[^\W\d_][.!?]$")


def check_input_format(input_format: str) -> None:
    """Refuse an ``--input_format`` that is none of :data:`INPUT_FORMATS`, naming them."""
    if input_format not in INPUT_FORMATS:
        raise ValueError(f"--input_format={input_format}: choose one of "
                         f"{', '.join(INPUT_FORMATS)}")  # fmt: skip


# The tables a qa task's questions and contexts may come in (jaxtl.data.io.table_rows).
QA_TABLES = {".tsv": "tsv", ".csv": "csv", ".parquet": "parquet"}
# Examples --predict runs through the model at a time: enough to fill packed rows and batches,
# few enough that the tokens, batches and records of one chunk stay small (tens of MB).
PREDICT_CHUNK = 8192


def _takes_pairs(task: Task) -> bool:
    """A sentence-pair task: it was trained on two text fields (``text`` and ``text_pair``; a
    qa task's question and context)."""
    return task.kind == "qa" or (task.kind in SENTENCE_KINDS and len(task.text_fields) == 2)


def _reads_files(spec: str) -> bool:
    """Whether a task's reader reads a file named to it in the task's own format: ``file:`` /
    ``hf:`` specs, and the named readers that take ``paths={split: file}`` (GLUE's)."""
    if spec.startswith(("file:", "hf:")):
        return True
    from jaxtl.data.catalogue import REGISTRY  # every reader registered
    from jaxtl.data.spec import factory_options

    return spec.lower() in REGISTRY and "paths" in factory_options(spec.lower())


def _file_extensions(spec: str) -> set[str]:
    """The extensions of the files a ``file:`` spec names (``path``, ``paths``)."""
    if not spec.startswith("file:"):
        return set()
    from jaxtl.data import spec as spec_lib

    return {extension(n) for n in spec_lib.spec_files(spec_lib.parse(spec)[1])}


def conllu_tag_column(spec: str) -> int | None:
    """The CoNLL-U column (3: UPOS, 4: XPOS) a tagging task's files hold its tags in, where its
    reader reads CoNLL-U (a ``file:`` spec of ``.conllu`` files or ``format=conllu``, or
    ``ud_pos``); None for another task, whose tags have no CoNLL-U column."""
    from jaxtl.data import spec as spec_lib

    if spec.lower() == "ud_pos":
        return 3
    if not spec.startswith("file:"):
        return None
    try:
        factory, options = spec_lib.route(*spec_lib.parse(spec), spec)
    except ValueError:
        return None
    if factory != "conll" or not options.get("conllu"):
        return None
    return options.get("tag_column", 3)


def _reads_as_own(path: str, task: Task, spec: str) -> bool:
    """Whether a file's first line looks like the task's own files' first lines: for a tagger,
    CoNLL columns (``-DOCSTART-``, or a last column that is one of its tags) rather than a
    sentence; for a fastText task, a line with a label (a word with its prefix, or a first word
    that is one of its labels); for a table, a header naming its text column."""
    from jaxtl.data import spec as spec_lib

    first = next(iter(text_lines(path)), ("", ""))[0]
    options = spec_lib.parse(spec)[1]
    if options.get("format") == "fasttext":  # labels among the words, or first
        prefix = options.get("label_prefix", FASTTEXT_PREFIX)
        labels = fasttext_record(first, prefix).get("label", [])
        return bool(labels) and (bool(prefix) or labels[0] in task.label_names)
    if task.kind == "tagging":
        fields = first.split()
        return first.startswith("-DOCSTART-") or (
            len(fields) >= 2 and fields[-1] in task.label_names
        )
    text = options.get("text", "text")
    return isinstance(text, str) and any(text in first.split(sep) for sep in "\t,;|")


def _check_inputs(examples: Sequence[Example], task: Task) -> None:
    """Inputs the model was not trained on stop with the first one's place: a single sentence
    for a sentence-pair task (or a pair for a single-sentence one) would be scored silently
    with the wrong token types; a question without its context has no answer to find, and a
    context without its question would still get one (some span of it)."""
    if task.kind == "qa":
        for ex in examples:
            if not ex.text.strip():
                raise DataError(f"{ex.source}: task {task.name!r} answers a question from its "
                                "context; this input has no question (lines: question<TAB>"
                                "context; jsonl: 'question' and 'context')")  # fmt: skip
            if not (ex.text_pair or "").strip():
                raise DataError(f"{ex.source}: task {task.name!r} answers a question from its "
                                "context; this input has no context (lines: question<TAB>"
                                "context; jsonl: 'question' and 'context')")  # fmt: skip
        return
    if task.kind not in SENTENCE_KINDS:
        return
    pairs = _takes_pairs(task)
    for ex in examples:
        if pairs and ex.text_pair is None:
            raise DataError(f"{ex.source}: task {task.name!r} takes sentence pairs "
                            f"({', '.join(task.text_fields)}); this input has one sentence "
                            "(lines: a tab between the two; jsonl: 'text_pair')")  # fmt: skip
        if not pairs and ex.text_pair is not None:
            raise DataError(f"{ex.source}: task {task.name!r} takes single sentences; this "
                            "input has a second one (text_pair)")  # fmt: skip


class Predictor:
    """A trained run's model, ready to predict; see :func:`load`."""

    def __init__(self, workdir: str | epath.Path, *, batch_size: int = 64):
        self.workdir = fileio.workdir(workdir)
        # Inputs predicted so far whose text filled data.max_length, so was cut there (sentence
        # kinds; a tagger's long text goes in windows, a qa context too).
        self.cut_inputs = 0
        self.config = ml_collections.ConfigDict(
            workdir_lib.read_json(self.workdir / "config.json", "config")
        )
        manifest = workdir_lib.read_json(self.workdir / "tasks.json", "tasks")
        self.batch_size = int(batch_size)
        runtime.configure_compiler(self.config)
        pre = assembly.load_encoder(self.config)
        if pre.tokenizer is None:
            raise ValueError(f"model {self.config.model.name!r} has no tokenizer files")
        self.tokenizer: Any = pre.tokenizer
        tuned = thresholds.load(self.workdir)  # per-class, where train.tune_thresholds chose
        self.tasks = [self._task_data(t, self.config, tuned.get(t["name"])) for t in
                      manifest["tasks"]]  # fmt: skip
        self.specs = {t["name"]: t["spec"] for t in manifest["tasks"]}
        # a translation task's decoder predicts its target vocabulary
        self.target_tokenizer = (
            seq2seq_objective.saved_target_tokenizer(self.workdir) or pre.tokenizer
        )
        model = assembly.build_model(
            pre.model,
            self.tasks,
            self.config,
            optims=list(config_lib.stage_optims(self.config).values()),
            tokenizer=self.target_tokenizer,
        )
        self.model, self.hf_config = model, pre.hf_config
        self.graphdef, params = nnx.split(model, nnx.Param)
        self.like = nnx.to_pure_dict(params)
        self._params: dict[str, Any] = {}
        self._stage_of, self._final_params = self._stages()
        self.packed = assembly.packing(self.config, pre.model)  # exact: same records either way
        self.eval_step = step_lib.make_eval_step(
            self.graphdef, objectives.switch_predict(self.tasks)
        )

    @staticmethod
    def _task_data(t: dict[str, Any], config: ml_collections.ConfigDict,
                   tuned: dict[str, float] | None = None) -> TaskData:  # fmt: skip
        def no_files(split: str):
            raise DataError(f"task {t['name']!r}: loaded from tasks.json, it reads no files")

        task = Task(t["name"], t["kind"], no_files, label_names=tuple(t["label_names"]),
                    text_fields=tuple(t["text_fields"]), metrics=tuple(t["metrics"]),
                    main_metric=t["main_metric"], iob=t["iob"],
                    null_answers=t.get("null_answers", False),
                    tag_scheme=t.get("tag_scheme", "iob2"))  # fmt: skip
        task = thresholds.apply(configured(task, config), tuned)
        return TaskData(task, t["index"], t["key"], 0, None, [], "dev")

    def _stages(self) -> tuple[dict[str, str], str]:
        """task name -> params directory of the stage that selected it (``selection.json``),
        and the final stage's (what an export writes)."""
        sel = self.workdir / "selection.json"
        out, final = {}, "checkpoints"
        if sel.exists():
            for st in json.loads(sel.read_text())["stages"]:
                final = st["params"] if st["params"] != "last" else "checkpoints"
                for name in st.get("dev_splits", {}):
                    out[name] = final
        else:  # a run stopped (or still going) before its end: said, not refused (a peek is fine)
            log.warning(
                "%s has no selection.json: its run has not finished, so its latest checkpoint's "
                "params are used, not a selected model (the run's own command finishes it)",
                self.workdir,
            )
        return out, final

    def params_for(self, task: str) -> Any:
        return self._load(self._stage_of.get(task, "checkpoints"))

    def selected_params(self, task: str | None = None) -> Any:
        """The params the run selected for ``task`` (named or the only one), else those of
        its final stage (what an export writes)."""
        if task is not None or len(self.tasks) == 1:
            return self.params_for(self.task(task).task.name)
        return self._load(self._final_params)

    def _load(self, where: str) -> Any:
        if where not in self._params:
            host, rep = checkpoint.load_params(self.workdir / where, self.like)
            log.info("params from %s: %s", where, rep.summary())
            self._params[where] = host
        return self._params[where]

    @property
    def task_names(self) -> list[str]:
        return [td.task.name for td in self.tasks]

    def task(self, name: str | None = None) -> TaskData:
        if name is None:
            if len(self.tasks) != 1:
                raise ValueError(f"this run has several tasks; name one with task= (--task): "
                                 f"{self.task_names}")  # fmt: skip
            return self.tasks[0]
        for td in self.tasks:
            if td.task.name == name or td.key == name:
                return td
        raise ValueError(f"unknown task {name!r}; this run's tasks: {self.task_names}")

    def predict(self, inputs: Iterable[Any], task: str | None = None, *, progress: bool = False,
                word_split: str = "whitespace"):  # fmt: skip
        """Prediction records for ``inputs``: strings, (text, text_pair) pairs, word lists
        (tagging) or :class:`~jaxtl.data.tasks.Example` objects; run a chunk at a time
        (:meth:`predict_stream`), so a long list costs no more memory than its records. A
        tagger's strings are split into words as ``word_split`` says
        (:mod:`jaxtl.data.words`: ``treebank`` splits punctuation off, as CoNLL's words are)."""
        td = self.task(task)
        check_word_split(word_split)
        examples = (self._example(x, td.task, i, word_split) for i, x in enumerate(inputs))
        return [predictions.in_scheme(r, td.task.tag_scheme)
                for r in self.predict_stream(examples, td, progress=progress)]  # fmt: skip

    @staticmethod
    def _example(x: Any, task: Task, i: int, word_split: str = "whitespace") -> Example:
        if isinstance(x, Example):
            return x
        if isinstance(x, str):
            words = split_words(x, word_split) if task.kind == "tagging" else None
            return Example(x, words=words, source=f"input:{i + 1}")
        if isinstance(x, (list, tuple)) and task.kind == "tagging":
            return Example(" ".join(x), words=tuple(x), source=f"input:{i + 1}")
        if isinstance(x, (list, tuple)) and len(x) == 2:
            return Example(str(x[0]), text_pair=str(x[1]), source=f"input:{i + 1}")
        if isinstance(x, dict) and task.kind == "qa" and {"question", "context"} <= set(x):
            return Example(str(x["question"]), text_pair=str(x["context"]),
                           source=f"input:{i + 1}")  # fmt: skip
        raise ValueError(f"input {i + 1}: expected a string or a (text, text_pair) pair"
                         f"{' (question, context)' if task.kind == 'qa' else ''}, got "
                         f"{type(x).__name__}")  # fmt: skip

    def predict_examples(self, examples: Sequence[Example], td: TaskData, *, progress=False):
        if not examples:
            return []
        _check_inputs(examples, td.task)
        translation = td.task.kind == "translation"
        labelled = all((ex.target if translation else ex.label) is not None for ex in examples)
        buckets = tuple(self.config.data.buckets)
        max_length = self.config.data.max_length
        enc = tokenize.encode(td.task, examples, self.tokenizer, max_length=max_length,
                              task_id=td.index, labelled=labelled,
                              target_tokenizer=self.target_tokenizer,
                              doc_stride=int(self.config.data.get("doc_stride", 0)))  # fmt: skip
        if td.task.kind not in ("tagging", "qa"):
            self.cut_inputs += int(np.count_nonzero(enc.lengths >= max_length))
        pad = tokenize.pad_id(self.tokenizer)
        packed = self.packed and td.task.kind in packing.KINDS  # decoder targets: padded
        make = packing.eval_batches if packed else batching.eval_batches
        batches = make(enc, batch_size=self.batch_size, buckets=buckets, pad_id=pad)
        params = self.params_for(td.task.name)
        if progress:
            from tqdm.auto import tqdm

            batches_iter = tqdm(batches, desc=f"predict {td.task.name}", disable=None)
        else:
            batches_iter = batches
        outputs = [jax.tree.map(np.asarray, self.eval_step(params, b)) for b in batches_iter]
        detok = tokenize.detokenizer(self.target_tokenizer) if translation else None
        rows = predictions.records(td.task, examples, enc, buckets, outputs, batches,
                                   labelled=labelled, detokenize=detok)  # fmt: skip
        if td.task.kind == "tagging":  # every word tagged, however long the text
            long = predictions.long_texts(examples, enc.lengths, self.tokenizer, max_length)
            if long:  # each tagged in overlapping windows that fit, as the run tags its splits
                predictions.retag_long_texts(
                    rows,
                    examples,
                    long,
                    lambda parts: self.predict_examples(parts, td, progress=progress),
                )
        return rows

    def predict_stream(self, examples: Iterable[Example], td: TaskData, *,
                       chunk: int = PREDICT_CHUNK, progress: bool = False) -> Iterator[dict]:  # fmt: skip
        """:meth:`predict_examples` over an iterable of any length, ``chunk`` examples at a
        time, yielding the records in input order (``id`` counts from 0 over the whole
        input, where an example has no id of its own): memory stays bounded by the chunk,
        whatever the input's size."""
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(desc=f"predict {td.task.name}", unit=" examples", disable=None)
        done = 0
        it = iter(examples)
        try:
            while part := list(itertools.islice(it, chunk)):
                for ex, r in zip(part, self.predict_examples(part, td), strict=True):
                    yield r if ex.id is not None else r | {"id": done + r["id"]}
                done += len(part)
                if bar is not None:
                    bar.update(len(part))
        finally:
            if bar is not None:
                bar.close()

    def evaluate(self, inputs: Iterable[Any], task: str | None = None) -> dict[str, float]:
        """The task's metrics on labelled ``inputs`` (:class:`~jaxtl.data.tasks.Example` objects
        with labels, or a file's examples from :meth:`read_input`), as the run scores its dev
        and test splits: ``{"accuracy": …, "macro_f1": …}``."""
        td = self.task(task)
        examples = (self._example(x, td.task, i) for i, x in enumerate(inputs))
        return metrics.score_records(td.task, list(self.predict_stream(examples, td)))

    def read_input(self, path: str, td: TaskData, input_format: str = "auto") -> list[Example]:
        """Every example of ``path`` (:meth:`iter_input`), in a list."""
        return list(self.iter_input(path, td, input_format))

    def input_format(self, path: str, td: TaskData, input_format: str = "auto") -> str:
        """The format :meth:`iter_input` reads ``path`` in: ``input_format``, or for ``auto``
        the one its extension and first line say (see :meth:`iter_input`)."""
        check_input_format(input_format)
        if input_format != "auto":
            return input_format
        # By extension: a table or CoNLL file is the task's format; so is a file named as the
        # task's own files are (CoNLL-2003's test.txt, for a task trained on its train.txt)
        # when its first line reads as theirs do.
        spec = self.specs.get(td.task.name, "")
        ext = extension(str(path))
        own = ext in (".tsv", ".csv", ".conll", ".conllu", *COLUMNAR) or (
            path != "-"
            and ext in _file_extensions(spec) - {".json", ".jsonl"}
            and _reads_as_own(path, td.task, spec)
        )
        if own and _reads_files(spec):
            return "task"
        if td.task.kind == "qa":  # questions and contexts: SQuAD JSON (lines), as its files
            return "task" if path != "-" and _reads_files(spec) else "jsonl"
        if ext in (".jsonl", ".json"):
            # {"review": …} for a task read with text=review is the task's own format
            return "task" if path != "-" and self._has_own_columns(path, spec) else "jsonl"
        return "lines"

    def iter_input(self, path: str, td: TaskData, input_format: str = "auto",
                   columns: Sequence[str | None] = (None, None),
                   word_split: str = "whitespace") -> Iterator[Example]:  # fmt: skip
        """Examples from ``path`` ("-" = stdin): ``lines`` (one text per line; a tab separates
        a sentence pair, or a translation source from its reference), ``jsonl`` (objects with
        ``text``, ``text_pair``, ``words``, ``target``, and ``id``, which its record keeps), or
        ``task`` (the task's own file format, for ``file:``/``hf:`` spec tasks and GLUE's).
        ``auto``: ``task`` for a .tsv/.csv/.conll/.conllu/.parquet/.arrow file of such a task,
        and for a .jsonl/.json one whose first object holds the task's own text columns;
        ``jsonl`` for other .jsonl/.json files, else ``lines``. Every format is read a line
        or row (Parquet: a batch of rows) at a time, so a file larger than memory streams (a QA
        table in two passes: whether every row has an answer, then the rows). ``columns``: the text (and pair) column of a table or JSON input whose
        columns are not the task's (``--text_column``), read as a table of the task's kind.
        ``word_split``: how a tagger's ``lines`` and ``jsonl`` texts become words
        (:mod:`jaxtl.data.words`); files of words (CoNLL, word lists) keep theirs."""
        check_input_format(input_format)
        check_word_split(word_split)
        if td.task.kind == "qa" and (
            input_format in TABLE_INPUTS
            or (extension(path) in QA_TABLES and input_format not in ("jsonl", "lines"))
        ):
            yield from self._read_qa_table(path, td, columns[0], columns[1], input_format)
            return
        if any(columns) or input_format in TABLE_INPUTS:
            yield from self._read_columns(path, td, input_format, *columns)
            return
        guessed = input_format == "auto"
        input_format = self.input_format(path, td, input_format)
        if input_format == "task":
            try:
                yield from self._read_task_format(path, td)
                return
            except DataError as e:
                if not guessed:
                    raise
                # The extension chose the task's layout (its columns); say how to read another.
                raise DataError(f"{e} (read in the own format of task {td.task.name!r}, "
                                "chosen by the file's extension; --text_column names the text "
                                "column of a table laid out otherwise, --input_format=lines "
                                "reads one text per line, jsonl one object per line)") from None  # fmt: skip
        yield from self._read_lines(path, td, input_format, word_split)

    def _read_qa_table(self, path: str, td: TaskData, question: str | None,
                       context: str | None, fmt: str = "auto") -> Iterator[Example]:  # fmt: skip
        """A qa task's questions and contexts from a table (``.tsv``, ``.csv``, ``.parquet``):
        its ``question`` and ``context`` columns (``--text_column`` and ``--text_pair_column``
        name others), each row's ``id`` where it has one and, where every row has one, gold
        answers — a SQuAD ``answers`` value (Parquet: ``{"text": [...], "answer_start":
        [...]}``) or one answer's text in an ``answer`` column, found in the context."""
        fmt = fmt if fmt in TABLE_INPUTS else QA_TABLES[extension(path)]
        names, rows = table_rows(path, fmt)
        q, c = question or "question", context or "context"
        try:
            q_at, c_at = column(names, q, path), column(names, c, path)
        except DataError as e:
            raise DataError(f"{e} (task {td.task.name!r} is qa: --text_column names the "
                            "question column, --text_pair_column the context's)") from None  # fmt: skip
        gold = next((g for g in ("answers", "answer") if g in names), None)
        rid_column, id_at = default_id_at(names)  # "ID"/"Id" too
        gold_at = None if gold is None else names.index(gold)

        def answers_of(fields: list[Any]) -> Any:
            a = None if gold_at is None else fields[gold_at]
            if gold == "answer":  # one answer's text a row, an empty cell for none
                return {"text": [a] if str(a or "").strip() else []}
            return a

        def answered(a: Any) -> bool:
            return a is not None and (not isinstance(a, dict) or bool(a.get("text")))

        # Scored only where every row has its answer (or the task lets a question have none):
        # a first pass over the file says so (stopping at the first unanswered row), the second
        # predicts, so neither holds the table.
        labelled = gold is not None and (td.task.null_answers or all(
            answered(answers_of(fields)) for _, fields in rows))  # fmt: skip
        bad = BadRows("error")
        for where, fields in table_rows(path, fmt)[1]:
            rid = None if id_at is None else row_id(fields[id_at], where, rid_column, bad)
            ex = qa_example(where, fields[q_at], fields[c_at], answers_of(fields), labelled,
                            td.task.null_answers, bad, rid, (q, c))  # fmt: skip
            if ex is not None:
                yield ex

    def _read_columns(self, path: str, td: TaskData, input_format: str, text: str | None,
                      pair: str | None) -> Iterator[Example]:  # fmt: skip
        """A table or JSON file whose text is in columns the task was not trained on (a CSV
        with ``comment`` for a task of ``sentence``), read as the task's kind, its labels
        (where the file has the task's label column) read as gold."""
        from jaxtl.data.files import file_task
        from jaxtl.data.hf_datasets import hf_task
        from jaxtl.data.spec import parse

        task = td.task
        ext = extension(path)
        fmt = {"auto": None, "jsonl": "jsonl", "task": None}.get(input_format, input_format)
        if path == "-" or fmt == "lines" or (fmt is None and table_format(path) is None
                                             and ext not in COLUMNAR):  # fmt: skip
            raise ValueError("--text_column/--text_pair_column name the columns of a table "
                             "(.tsv, .csv, .parquet) or JSON file; this input is read as lines")  # fmt: skip
        if task.kind == "qa":
            raise ValueError(f"task {task.name!r} is qa: its inputs are questions and contexts, "
                             "from a .tsv, .csv or .parquet table or JSON lines")  # fmt: skip
        spec = self.specs.get(task.name, "")
        opts = parse(spec)[1] if spec.startswith(("file:", "hf:")) else {}
        if text is None:
            text = opts.get("text", "text")
        if pair is None and _takes_pairs(task):
            pair = opts.get("text_pair", "text_pair")
        keep = {k: opts[k] for k in ("label", "label_columns", "label_sep", "encoding")
                if opts.get(k) is not None}  # fmt: skip
        common = dict(name=task.name, text=text, text_pair=pair, kind=task.kind,
                      label_names=tuple(task.label_names) or None)  # fmt: skip
        file = os.path.abspath(path)
        try:
            if ext in COLUMNAR:
                keep.pop("label_sep", None), keep.pop("encoding", None)
                t = hf_task(path=file, **common, **keep, _labels_optional=True)  # type: ignore[arg-type]
            else:
                t = file_task(None, paths={"test": file}, format=fmt, **common, **keep)  # type: ignore[arg-type]
            yield from t.iterate(t.splits[0])  # a row at a time
        except DataError as e:
            names = "--text_column and --text_pair_column" if pair else "--text_column"
            raise DataError(f"{e} (task {task.name!r} reads text={text!r}"
                            + (f", text_pair={pair!r}" if pair else "")
                            + f"; {names} name the columns)") from None  # fmt: skip

    def _read_lines(self, path: str, td: TaskData, input_format: str,
                    word_split: str = "whitespace") -> Iterator[Example]:  # fmt: skip
        if input_format == "jsonl":
            yield from self._read_json(path, td, word_split)
            return
        lines = attached = 0  # a tagger's lines, and those ending in a word like "Paris."
        shown = ""
        for line, where in text_lines(path):
            if td.task.kind == "translation":  # source<TAB>reference
                first, _, second = line.partition("\t")
                yield Example(first, target=second or None, source=where)
            elif td.task.kind == "tagging":
                words = split_words(line, word_split)
                lines += 1
                if word_split == "whitespace" and _ATTACHED.match(words[-1]):
                    attached, shown = attached + 1, shown or words[-1]
                yield Example(line, words=words, source=where)
            elif _takes_pairs(td.task):  # sentence<TAB>sentence
                first, _, second = line.partition("\t")
                yield Example(first, text_pair=second or None, source=where)
            else:  # a tab in a single sentence is part of it
                yield Example(line, source=where)
        if attached and attached * 2 >= lines:
            log.warning(
                "%s: %d of %d lines end in a word with its punctuation attached (%r): a "
                "tagger's words are a line's whitespace-separated tokens, each tagged as it is; "
                "--word_split=treebank splits punctuation off as CoNLL's and UD's words are "
                "('Paris .')", path, attached, lines, shown)  # fmt: skip

    def _read_json(self, path: str, td: TaskData,
                   word_split: str = "whitespace") -> Iterator[Example]:  # fmt: skip
        for rec, where in json_values(path):
            if td.task.kind == "qa" and isinstance(rec, dict) and "context" in rec:
                # a question and its context, as a SQuAD JSON-lines file holds them
                rid = row_id(rec["id"], where, "id", BadRows()) if "id" in rec else None
                yield Example(str(rec.get("question") or ""), text_pair=str(rec["context"]),
                              source=where, id=rid)  # fmt: skip
                continue
            if not isinstance(rec, dict) or not ({"text", "words"} & set(rec)):
                got = f"; got keys {sorted(rec)}" if isinstance(rec, dict) else ""
                columns = ", ".join(repr(c) for c in td.task.text_fields)
                raise DataError(f"{where}: expected an object with 'text' (or 'words'), or "
                                f"with the columns task {td.task.name!r} was trained on: "
                                f"{columns}{got}")  # fmt: skip
            for key in ("text", "text_pair", "target"):
                if rec.get(key) is not None and not isinstance(rec[key], str):
                    raise DataError(f"{where}: {key!r} must be a string, got "
                                    f"{type(rec[key]).__name__} {rec[key]!r}")  # fmt: skip
            if "words" in rec and not (
                isinstance(rec["words"], list) and all(isinstance(w, str) for w in rec["words"])
            ):
                raise DataError(f"{where}: 'words' must be a list of strings")
            words = tuple(rec["words"]) if "words" in rec else None
            if words is None and td.task.kind == "tagging" and isinstance(rec.get("text"), str):
                words = split_words(rec["text"], word_split)
            text_ = rec.get("text") or " ".join(words or ())
            # an object's own "id" is its record's id (a bad one stops: BadRows("error"))
            rid = row_id(rec["id"], where, "id", BadRows()) if "id" in rec else None
            yield Example(text_, text_pair=rec.get("text_pair"), words=words,
                          target=rec.get("target"), source=where, id=rid)  # fmt: skip

    @staticmethod
    def _has_own_columns(path: str, spec: str) -> bool:
        """Whether a JSON-lines file's first object holds the text columns a ``file:``/``hf:``
        task was trained on (``text=review`` → ``{"review": …}``) rather than the generic
        ``text``/``words`` keys: then it is the task's own format, labels and all."""
        if not spec.startswith(("file:", "hf:")):
            return False
        from jaxtl.data import spec as spec_lib

        options = spec_lib.parse(spec)[1]
        columns = [options[k] for k in ("text", "text_pair") if options.get(k) is not None]
        if not columns or not all(isinstance(c, str) for c in columns):
            return False
        try:
            rec = next(iter(json_values(path)), None)
        except DataError:
            return False  # the generic reader names the line
        return (
            isinstance(rec, tuple)
            and isinstance(rec[0], dict)
            and all(c in rec[0] for c in columns)
        )

    def _read_task_format(self, path: str, td: TaskData) -> Iterator[Example]:
        """``path`` in the task's own format, streamed where its reader can (a ``file:``
        task's table or JSON lines, GLUE's files): a file larger than memory predicts."""
        from jaxtl.data import spec as spec_lib

        spec = self.specs.get(td.task.name, "")
        if not _reads_files(spec):
            raise ValueError(f"task {td.task.name!r} ({spec}) has no file format of its own; use "
                             "--input_format=lines or jsonl")  # fmt: skip
        file = os.path.abspath(path)
        if not spec.startswith(("file:", "hf:")):  # a named reader (GLUE): its own layout
            from jaxtl.data.catalogue import get_task

            task = get_task(spec, None, paths={"test": file})
            return task.iterate("test")
        # Labels are the trained ones whatever the file holds.
        names = {"label_names": tuple(td.task.label_names)} if td.task.label_names else {}
        if spec.startswith("hf:") or extension(file) in COLUMNAR:
            # The hf reader, on the task's columns: an hf task's own format, or a table task
            # given a Parquet/Arrow file; the file may lack the label column.
            from jaxtl.data.hf_datasets import hf_task

            opts = spec_lib.parse(spec)[1]
            columns = {k: opts[k] for k in ("text", "text_pair", "label", "label_columns",
                                            "target", "question", "context", "answers",
                                            "null_answers") if opts.get(k) is not None}  # fmt: skip
            if "id" in opts:  # id= (empty) numbers the rows
                columns["id"] = opts["id"]
            task = hf_task(path=file, name=td.task.name, kind=td.task.kind, **columns, **names,
                           _labels_optional=True)  # fmt: skip
            return task.iterate(task.splits[0])
        # A file task reads the file as a "test" split, which may lack the label column. A JSON
        # input keeps the task's columns, not its files' table layout (format, delimiter).
        layout = {"format": None, "delimiter": None} if table_format(file) == "jsonl" else {}
        task = spec_lib.get_task(
            spec, replace={"path": None, "paths": {"test": file}} | layout | names
        )
        return task.iterate(task.splits[0])

    def export(self, out_dir: str | epath.Path) -> dict[str, Any]:
        """What ``export_dir`` writes at the end of a run, for a finished workdir: the encoder,
        one transformers task model per task, a PEFT adapter for LoRA (the final stage's
        selected params)."""
        from jaxtl import export
        from jaxtl.run import Run

        workdir_lib.check_output(self.workdir, out_dir, "--output", folder=True,
                                 subfolders=[td.task.name for td in self.tasks])  # fmt: skip

        run = Run(
            config=self.config,
            workdir=self.workdir,
            # A Predictor has no device mesh, and export_run never reads run.mesh.
            mesh=None,  # type: ignore[arg-type]
            model=self.model,
            tokenizer=self.tokenizer,
            hf_config=self.hf_config,
            tasks=self.tasks,
            objective=None,
            params=self.like,
        )
        return export.export_run(run, self._load(self._final_params), out_dir)


def load(workdir: str | epath.Path, **kwargs: Any) -> Predictor:
    """The trained model of a finished run, for :meth:`Predictor.predict`."""
    return Predictor(workdir, **kwargs)


def predict_command(workdir: str, input_path: str, output: str, task: str | None,
                    input_format: str = "auto", output_format: str = "auto",
                    columns: Sequence[str | None] = (None, None), word_split: str = "whitespace",
                    ) -> tuple[int, dict[str, float] | None]:  # fmt: skip
    """``launch.py --predict``: records for every row of ``input_path`` to ``output`` ("-" =
    stdout) as JSON lines or a table (``output_format``, by default the output's extension:
    :func:`jaxtl.predictions.output_format`), streamed a chunk at a time
    (:meth:`Predictor.predict_stream`; a file appears whole at the end, never half-written);
    returns the number of rows and, when every row has a gold label, the task's metrics against
    them (None otherwise)."""
    workdir_lib.check_file_command(input_path, output, workdir, "--predict")
    check_input_format(input_format)
    check_word_split(word_split)
    out_format = predictions.output_format(output, output_format)
    p = load(workdir)
    td = p.task(task)
    conllu_column = conllu_tag_column(p.specs.get(td.task.name, ""))
    predictions.check_format(td.task, out_format, conllu_column)
    fmt = "columns" if any(columns) else p.input_format(input_path, td, input_format)
    if input_path != "-" and (fmt in ("jsonl", "task", "columns")
                              or (fmt == "lines" and _takes_pairs(td.task))):  # fmt: skip
        # Inputs are read a line or row at a time while predicting (a file larger than memory
        # predicts), so a pass that only reads them comes first: a bad line stops the command
        # before the model runs, not after. Only these can hold one (a line that is not an
        # object, a pair without its tab, a row the task's reader refuses).
        for ex in p.iter_input(input_path, td, input_format, columns, word_split):
            _check_inputs([ex], td.task)
    examples = p.iter_input(input_path, td, input_format, columns, word_split)
    # What scoring needs of each record (not its text): kept while every record has gold.
    keep = {"classification": "label", "multilabel": "labels", "regression": "score",
            "tagging": "tags", "translation": "translation", "qa": "answer"}.get(td.task.kind)  # fmt: skip
    scored: list[dict[str, Any]] | None = []
    n = 0
    with predictions.open_writer(output, out_format, td.task.label_names,
                                 conllu_column or 3) as writer:  # fmt: skip
        for r in p.predict_stream(examples, td, progress=True):
            writer.write(predictions.in_scheme(r, td.task.tag_scheme))  # scored as IOB2, below
            n += 1
            if scored is not None and keep and "gold" in r:
                scored.append({"gold": r["gold"], keep: r[keep]})
            else:
                scored = None
        if n == 0:  # an empty file (or blank lines only) is a mistake: no file is left
            where = "stdin" if input_path == "-" else f"--input={input_path}"
            raise DataError(f"{where}: no text to predict (the input is empty or blank)")
    if p.cut_inputs:
        log.warning("%d of %d inputs filled the run's data.max_length=%d tokens: the model read "
                    "none of their text beyond it (the run trained within the same limit)",
                    p.cut_inputs, n, p.config.data.max_length)  # fmt: skip
    return n, metrics.score_records(td.task, scored) if scored else None
