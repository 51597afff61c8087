"""jaxtl's command line: train in a regime (config resolved and checked, then handed over),
or predict with / export a finished run.

    jaxtl --regime=REGIME [--config=FILE.py|NAME[:tiny]] [--config.KEY=VALUE ...] [--workdir=DIR]
    jaxtl --predict --workdir=DIR --input=FILE
          [--output=OUT.jsonl|.json|.tsv|.csv|.parquet|.conll|.conllu]
          [--task=NAME] [--input_format=auto|lines|jsonl|task|tsv|csv]
          [--word_split=whitespace|treebank]
          [--output_format=auto|jsonl|json|tsv|csv|parquet|squad|conll|conllu]
    jaxtl --export --workdir=DIR --output=FOLDER
    jaxtl --glue_submission --workdir=DIR [--workdir=DIR2 ...] --output=glue.zip [--data_dir=D]
    jaxtl --embed --model=NAME|--workdir=DIR --input=FILE [--output=OUT.npy|.parquet|.json|.jsonl]
          [--representation=last|...] [--pooling=mean|cls|last] [--normalize=true|false]
          [--dense=true|false] [--prompt_name=query|--prompt=TEXT]
    jaxtl --regime=REGIME ... --seeds=0,1,2 [--sweep=KEY=V1|V2 ...] [--workdir=DIR]
          [--sweep_jobs=N] [--sweep_devices=0,1,...]
    jaxtl --regime=REGIME ... --lr_find [--lr_find_steps=100] [--lr_find_end=10]

``jaxtl`` is the installed command; ``python -m jaxtl`` and, in a clone, ``python launch.py``
are the same program. REGIME: self_supervised | unsupervised_sequential | multitask |
supervised_sequential. Without --config, the regime's own config file is used. The config files
ship with the package (``jaxtl/configs/``; a clone also sees them as ``configs/``), so
``--config=multitask_glue`` or ``--config=configs/multitask_glue.py`` name one from any folder,
while a path to a file that exists (your own config) is taken as it is. ``:tiny`` after the name
(passed to its ``get_config``) runs the same stages and strategy at smoke-test size, about a
minute on a 2-core CPU (sizes in ``jaxtl/configs/tiny.py``). Re-running with the same --workdir
resumes from its latest good checkpoint. On a TPU VM every worker runs the same command line
(with --config.distributed.enabled=True).
"""

from __future__ import annotations

import datetime
import errno
import logging
import os
import pathlib
import re
import sys
from typing import Any, NoReturn

# The config files shipped with the package; ``configs/`` in a clone is a link to this folder.
CONFIG_DIR = pathlib.Path(__file__).resolve().parent / "configs"


def packaged_configs() -> list[str]:
    """Names of the shipped config files (``tiny`` is the shrinking helper, not a config)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.py") if p.stem not in ("__init__", "tiny"))


def resolve_config(value: str) -> str:
    """``--config``'s value with its file made concrete: an existing file is kept as it is (a
    user's own config); otherwise ``NAME``, ``NAME.py`` or ``configs/NAME.py`` (the spelling of
    every command in the docs, from any folder) names a shipped config. ``:ARG`` is kept."""
    path, sep, arg = value.partition(":")
    if os.path.isfile(path):
        return value
    p = pathlib.PurePath(path)
    name = p.stem if p.suffix == ".py" else p.name
    if p.parent.name in ("", "configs") and name in packaged_configs():
        return f"{CONFIG_DIR / f'{name}.py'}{sep}{arg}"
    raise ValueError(
        f"--config: No such file or directory: {path!r}; a config is a file's path or the name "
        f"of a shipped one: {', '.join(packaged_configs())}"
    )


def config_args(argv: list[str]) -> list[str]:
    """argv with ``--config`` resolved (:func:`resolve_config`), or, when it is missing, the
    regime's own config inserted (overrides still apply)."""
    out, has_config, regime = list(argv[:1]), False, None
    args = iter(argv[1:])
    for a in args:
        if a.startswith("--config="):
            has_config = True
            a = "--config=" + resolve_config(a.split("=", 1)[1])
        elif a == "--config":
            has_config = True
            out.append(a)
            a = resolve_config(next(args, ""))
        elif a.startswith("--regime="):
            regime = a.split("=", 1)[1]
        elif a == "--regime":
            out.append(a)
            a = regime = next(args, "")
        out.append(a)
    if has_config or regime is None:
        return out
    from jaxtl.regimes import REGIMES

    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; choose one of: {', '.join(REGIMES)}")
    return out[:1] + [f"--config={CONFIG_DIR / f'{regime}.py'}"] + out[1:]


def _load_config(value: str) -> Any:
    """The config a resolved ``--config`` value names, loaded as ml_collections will load it
    (``get_config(ARG)`` with ``:ARG``, else ``get_config()``)."""
    import importlib.util

    path, sep, arg = value.partition(":")
    spec = importlib.util.spec_from_file_location("_jaxtl_user_config", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.get_config(arg) if sep else module.get_config()


def _config_of(argv: list[str]) -> Any:
    """The config a resolved argv's ``--config`` names, before its overrides; None when there is
    none or it does not load (the flag parser reports a broken config file itself)."""
    value = next((argv[i + 1] if a == "--config" else a.split("=", 1)[1]
                  for i, a in enumerate(argv)
                  if a.startswith("--config=") or a == "--config" and i + 1 < len(argv)),
                 None)  # fmt: skip
    if value is None:
        return None
    try:
        return _load_config(value)
    except Exception:  # noqa: BLE001 - reported by the flag parser
        return None


# The spec strings of a user's own data (``file:name=N,path=P,...``, ``hf:...``) carry commas,
# which ml_collections reads as a tuple's separators when the key holds a tuple.
_SPEC_PREFIXES = ("file:", "hf:")


def single_spec_overrides(argv: list[str]) -> list[str]:
    """argv with the task lists a user types made the tuples they mean, for a key that holds a
    tuple of names: ``--config.KEY=file:...`` (one spec string, unquoted) becomes a one-element
    tuple — ml_collections would refuse it, as a spec's commas look like a tuple's — and
    ``--config.KEY=sst2,cola`` the tuple of those names (ml_collections would keep it as one
    name, ``'sst2,cola'``). A value already written as a tuple is left alone; a comma list that
    holds a spec string is refused, as its commas cannot be told apart."""

    def is_list(value: str) -> bool:
        return value.lower().startswith(_SPEC_PREFIXES) or (
            "," in value and not value.lstrip().startswith(("(", "["))
        )

    candidates = [i for i, a in enumerate(argv) if a.startswith("--config.") and "=" in a
                  and is_list(a.split("=", 1)[1])]  # fmt: skip
    config = _config_of(argv) if candidates else None
    if config is None:
        return argv
    out = list(argv)
    for i in candidates:
        key, value = argv[i][len("--config.") :].split("=", 1)
        node = _config_node(config, key)
        if not isinstance(node, tuple) or not all(isinstance(x, str) for x in node):
            continue
        if value.lower().startswith(_SPEC_PREFIXES):
            out[i] = f"--config.{key}={(value,)!r}"
            continue
        names = tuple(x.strip() for x in value.split(",") if x.strip())
        if any(x.lower().startswith(_SPEC_PREFIXES) for x in names):
            raise ValueError(f"--config.{key}={value}: a list that holds a spec string needs "
                             f"tuple syntax, e.g. --config.{key}='(\"sst2\", \"file:name=…\")'")  # fmt: skip
        out[i] = f"--config.{key}={names!r}"
    return out


def _config_node(config: Any, key: str) -> Any:
    """``config``'s value at a dotted ``key``, or None where the path does not exist."""
    node = config
    for part in key.split("."):
        node = node.get(part) if hasattr(node, "get") else None
    return node


def _has_path(config: Any, key: str) -> bool:
    """Whether ``config`` has the dotted ``key`` (whatever its value, None included)."""
    node = config
    for part in key.split("."):
        if not hasattr(node, "keys") or part not in node.keys():
            return False
        node = node[part]
    return True


def _through_a_value(config: Any, argv: list[str]) -> str | None:
    """The error for an override that reaches into a value as if it were a section
    (``--config.model.representation.kind=...`` where ``model.representation`` is a string),
    which ml_collections reports only as a TypeError about indexing a string; None for none."""
    if config is None:
        return None
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        parts = arg.split("=", 1)[0][len("--config.") :].split(".")
        node = config
        for i, part in enumerate(parts[:-1]):
            node = node.get(part) if hasattr(node, "get") else None
            if node is None:
                break
            if not hasattr(node, "keys"):
                key = ".".join(parts[: i + 1])
                return (f"{arg.split('=', 1)[0]}: config.{key} is a value ({node!r}), not a "
                        f"section with keys: set it as --config.{key}=VALUE")  # fmt: skip
    return None


def _paths_named(config: Any, key: str, prefix: str = "") -> list[str]:
    """Every dotted path in ``config`` whose last part is ``key`` (sorted)."""
    found = []
    for name in sorted(config.keys()) if hasattr(config, "keys") else []:
        path = prefix + name
        if name == key:
            found.append(path)
        found += _paths_named(config[name], key, path + ".")
    return found


def _command(prog: str) -> str:
    """How the user typed the program, for hints: ``jaxtl`` or ``python launch.py``."""
    return f"python {prog}" if prog.endswith(".py") else prog


def _one_line(message: str) -> str:
    """A user error's message on one line, whatever line breaks it carried."""
    return " ".join(message.split())


def _file_command_logging() -> None:
    """What ``--predict``, ``--embed`` and ``--glue_submission`` log: warnings, without absl's
    (orbax's notes on params-only restores)."""
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.WARNING)
    logging.getLogger("absl").setLevel(logging.ERROR)


def predict_main(argv: list[str], prog: str = "jaxtl") -> None:
    """``--predict``: run a finished workdir's selected model on a file; ``--export``: write it
    in Hugging Face layout. No regime, no config: both read the workdir."""
    import argparse

    parser = argparse.ArgumentParser(prog=f"{prog} --predict | --export")
    parser.add_argument("--predict", action="store_true")
    parser.add_argument("--export", action="store_true", help="export to --output (a folder)")
    parser.add_argument("--workdir", required=True, help="a finished run's workdir")
    parser.add_argument("--input", help="input file ('-' = stdin); with gold labels in every "
                        "row, the task's metrics against them are printed too")  # fmt: skip
    parser.add_argument("--output", default="-", help="output file ('-' = stdout): JSON lines, "
                        "or by its extension: .json (one array), .tsv, .csv, .parquet, .conll, "
                        ".conllu")  # fmt: skip
    parser.add_argument("--output_format", default="auto",
                        help="auto (by --output's extension) | jsonl | json | tsv | csv | parquet | "
                        "squad (a qa task's answers as SQuAD's prediction file: id -> answer) | "
                        "conll (a tagger's: word [gold] tag per line) | conllu (a tagger "
                        "trained on CoNLL-U: its tags in UPOS or XPOS)")  # fmt: skip
    parser.add_argument("--task", default=None, help="task name, when the run has several")
    parser.add_argument(
        "--input_format",
        default="auto",
        help="auto | lines (one text per line; tab = pair) | jsonl | task | tsv | csv (a "
        "table whatever its extension)",
    )
    parser.add_argument("--text_column", default=None, help="the column (or JSON key) of a "
                        "table input that holds the text (a qa task's question), when not the "
                        "task's own")  # fmt: skip
    parser.add_argument("--text_pair_column", default=None, help="a pair task's second text "
                        "column (a qa task's context), when not the task's own")  # fmt: skip
    parser.add_argument("--word_split", default="whitespace", help="how a tagger's raw text "
                        "(lines, or jsonl 'text') becomes words: whitespace (each token tagged "
                        "as it is) | treebank (punctuation split off, 'did n't', as CoNLL and "
                        "UD English files are)")  # fmt: skip
    args = parser.parse_args(argv[1:])
    _file_command_logging()
    from jaxtl import runtime
    from jaxtl.predictor import load, predict_command
    from jaxtl.workdir import check_export_folder
    from jaxtl.workdir import check_output as workdir_check_output

    runtime.quiet_garbage_collector()

    try:
        if args.export:
            if args.output == "-":
                raise ValueError("--export needs --output=FOLDER")
            workdir_check_output(args.workdir, args.output, "--output", folder=True)
            check_export_folder(args.output, "--output")
            written = load(args.workdir).export(args.output)
            print(f"jaxtl: exported to {args.output}: the encoder (AutoModel; no task head)")
            for name, rep in written.items():
                if name != "(encoder)":
                    loads = rep.get("skipped") or rep.get("transformers") or rep.get("format")
                    print(f"  {name}: {rep.get('path', '')}: {loads}")
            return
        if not args.input:
            raise ValueError("--predict needs --input=FILE (or - for stdin)")
        n, scores = predict_command(args.workdir, args.input, args.output, args.task,
                                    args.input_format, args.output_format,
                                    (args.text_column, args.text_pair_column),
                                    args.word_split)  # fmt: skip
    except (ValueError, OSError) as e:  # user errors (a file, a folder): one line, no traceback
        sys.exit(_one_line(f"{prog}: {e}"))
    # stdout carries the predictions when --output=-: the summary goes to stderr then.
    out = sys.stdout if args.output != "-" else sys.stderr
    if args.output != "-":
        print(f"jaxtl: {n} predictions written to {args.output}", file=out)
    if scores is not None:
        shown = "  ".join(f"{k}={v:.4f}" for k, v in scores.items())
        gold = "references" if set(scores) <= {"bleu"} else "gold labels"  # a translation's
        print(f"jaxtl: against the input's {gold} ({n} examples): {shown}", file=out)


def embed_main(argv: list[str], prog: str = "jaxtl") -> None:
    """``--embed``: one vector per input from a pretrained model or a finished run's encoder
    (:mod:`jaxtl.embed`)."""
    import argparse

    parser = argparse.ArgumentParser(prog=f"{prog} --embed")
    parser.add_argument("--embed", action="store_true")
    parser.add_argument("--model", help="a pretrained model: minilm, a local Hugging Face "
                        "folder, or a hub id in the local cache")  # fmt: skip
    parser.add_argument("--workdir", help="a finished run: its selected encoder")
    parser.add_argument("--task", default=None, help="with --workdir: whose selected params")
    parser.add_argument("--input", required=True, help="input file ('-' = stdin)")
    parser.add_argument("--output", default="-", help="output: .npy (float32 [N, D]), .parquet "
                        "(id, text, embedding), .json (one array of such records) or JSON "
                        "lines (any other name, '-' = stdout)")  # fmt: skip
    parser.add_argument("--input_format", default="auto",
                        help="auto (by the extension) | lines (one text per line) | jsonl "
                        "(text, text_pair) | tsv | csv | parquet (a table's text column)")  # fmt: skip
    parser.add_argument("--text_column", default=None, help="the JSON key or table column to "
                        "embed (default: text)")  # fmt: skip
    parser.add_argument("--text_pair_column", default=None, help="a second one, embedded with "
                        "it as a sentence pair (default: text_pair, where there is one)")  # fmt: skip
    parser.add_argument("--representation", default=None,
                        help="last | second_to_last | sum_last_four | concat_last_four | "
                        "embeddings | scalar_mix | elmo | cove (default: the run's, else last)")  # fmt: skip
    parser.add_argument("--pooling", default=None,
                        help="mean | cls | last (default: a sentence-transformers folder's, "
                        "else mean)")  # fmt: skip
    parser.add_argument("--normalize", default=None, choices=("true", "false"),
                        help="unit-length vectors (default: as a sentence-transformers folder "
                        "says, else false)")  # fmt: skip
    parser.add_argument("--dense", default=None, choices=("true", "false"),
                        help="a sentence-transformers folder's Dense projections of the pooled "
                        "vector (default: where the folder has them)")  # fmt: skip
    parser.add_argument("--prompt_name", default=None,
                        help="one of a sentence-transformers folder's prompts (query, document "
                        "...), put before each text (default: the folder's default prompt)")  # fmt: skip
    parser.add_argument("--prompt", default=None,
                        help="a text put before each input instead (\"query: \")")  # fmt: skip
    parser.add_argument("--max_length", type=int, default=None,
                        help="longest input in tokens, longer ones cut (default: the folder's "
                        "max_seq_length, else the model's limit up to 512)")  # fmt: skip
    parser.add_argument("--batch_size", type=int, default=64, help="rows per encoder call")
    parser.add_argument("--allow_pickle", action="store_true",
                        help="accept a pytorch_model.bin (pickle) checkpoint")  # fmt: skip
    args = parser.parse_args(argv[1:])
    _file_command_logging()
    from jaxtl import embed, runtime
    from jaxtl.workdir import check_file_command

    runtime.quiet_garbage_collector()
    try:
        check_file_command(args.input, args.output, args.workdir, "--embed")  # before the model
        # a run's task's own columns, where a table input has them
        own = embed.run_columns(args.workdir, args.task) if args.workdir else (None, None)
        if args.input != "-":  # the input's format and columns too
            next(embed.read_inputs(args.input, args.input_format, args.text_column,
                                   args.text_pair_column, own), None)  # fmt: skip
        settings = embed.Settings(
            representation=args.representation, pooling=args.pooling,
            normalize=None if args.normalize is None else args.normalize == "true",
            dense=None if args.dense is None else args.dense == "true",
            prompt_name=args.prompt_name, prompt=args.prompt,
            max_length=args.max_length, batch_size=args.batch_size,
        )  # fmt: skip
        e = embed.embedder(args.model, workdir=args.workdir, task=args.task, settings=settings,
                           allow_pickle=args.allow_pickle)  # fmt: skip
        n = embed.embed_command(e, args.input, args.output, args.input_format,
                                args.text_column, args.text_pair_column, own)  # fmt: skip
    except (ValueError, OSError) as err:  # user errors: one line, no traceback
        sys.exit(_one_line(f"{prog}: {err}"))
    out = sys.stdout if args.output != "-" else sys.stderr
    where = "" if args.output == "-" else f" to {args.output}"
    print(f"jaxtl: {n} embeddings ({e.describe()}) written{where}", file=out)


def glue_submission_main(argv: list[str], prog: str = "jaxtl") -> None:
    """``--glue_submission``: the GLUE leaderboard's files from finished runs
    (:mod:`jaxtl.submission`)."""
    import argparse

    parser = argparse.ArgumentParser(prog=f"{prog} --glue_submission")
    parser.add_argument("--glue_submission", action="store_true")
    parser.add_argument("--workdir", action="append", required=True,
                        help="a finished run's workdir; repeat it for one run per task")  # fmt: skip
    parser.add_argument("--output", required=True,
                        help="a .zip (the files at its root, as gluebenchmark.com takes it) or "
                        "a folder")  # fmt: skip
    parser.add_argument("--data_dir", default=None, help="the folder holding the GLUE "
                        "distribution (default: each run's data.dir)")  # fmt: skip
    args = parser.parse_args(argv[1:])
    _file_command_logging()
    from jaxtl import submission

    try:
        written, missing = submission.write(args.workdir, args.output, args.data_dir)
    except (ValueError, OSError, KeyError) as e:
        sys.exit(_one_line(f"{prog}: {e}"))
    print(f"jaxtl: wrote {args.output}:")
    for w in written:
        size = submission.SIZES[w.entry.file]
        note = "" if w.rows == size else f"  (GLUE's test set has {size:,}: not the leaderboard's)"
        print(
            f"  {w.entry.file:<12} {w.rows:>7,} rows  task {w.entry.task} of "
            f"{w.entry.workdir}{note}"
        )
    if missing:
        print(f"jaxtl: not in this submission: {', '.join(missing)}")


def sweep_flags() -> tuple[str, ...]:
    from jaxtl.sweep import FLAGS

    return FLAGS


def sweep_main(args: list[str], resolved: list[str], prog: str) -> None:
    """``--seeds`` / ``--sweep``: one run per setting and seed, each a ``jaxtl`` process
    (:mod:`jaxtl.sweep`). ``args``: the command line as typed (each run gets it, resolving
    its --config itself); ``resolved``: with --config made concrete, to check the swept keys."""
    from jaxtl import sweep

    value = next((a.split("=", 1)[1] for a in resolved if a.startswith("--config=")), None)
    try:
        sweep.run(args, prog, load_config=(lambda: _load_config(value)) if value else None)
    except sweep.Stopped as e:  # as a single run that was preempted: a clean stop
        print(f"jaxtl: {e}")
    except KeyboardInterrupt:
        sys.exit("\njaxtl: sweep interrupted; the same command resumes it")
    except (ValueError, RuntimeError, OSError) as e:
        sys.exit(_one_line(f"{prog}: {e}"))


def lr_find_main(args: list[str], prog: str) -> None:
    """``--lr_find``: the learning-rate range test (:mod:`jaxtl.lr_find`)."""
    from jaxtl import lr_find

    try:
        lr_find.run(args, prog)
    except KeyboardInterrupt:
        sys.exit("\njaxtl: range test interrupted")
    except (ValueError, RuntimeError, OSError) as e:
        sys.exit(_one_line(f"{prog}: {e}"))


def _stop_on_full_disk(e: OSError, workdir: str) -> NoReturn:
    """A full disk: files are written whole or not at all and a checkpoint is committed only
    when complete, so what is on disk is consistent and the next run resumes."""
    from jaxtl import workdir as workdir_lib

    workdir_lib.Lock(workdir).release()
    # Orbax's writer threads, cut short by the full disk, go on printing tracebacks about their
    # closed event loop: silence stderr for them, write the message last, leave. The message
    # starts a line of its own: a thread may have written part of a line before stderr was
    # silenced.
    sys.stderr.flush()
    real = os.dup(2)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    os.write(real, (f"\njaxtl: error: no space left on device writing {e.filename or '?'}; "
                    "the files written before are whole and the last good checkpoint is "
                    "kept: free space and run the same command to resume\n").encode())  # fmt: skip
    os._exit(1)


def _missing_folders(path: str) -> list[str]:
    """The folders of ``path`` that do not exist yet, deepest first (local paths only)."""
    if "://" in path:
        return []
    missing, p = [], os.path.abspath(path)
    while p and not os.path.exists(p):
        missing.append(p)
        p = os.path.dirname(p) if os.path.dirname(p) != p else ""
    return missing


def _default_workdir(regime: str, root: str = "runs") -> str:
    """The default workdir's name: ``root/<regime>-<time>``, absolute."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.abspath(os.path.join(root, f"{regime}-{stamp}"))


def new_run_folder(regime: str, root: str = "runs") -> tuple[str, list[str]]:
    """A new default workdir (:func:`_default_workdir`), made here and now, with ``-2``, ``-3``…
    when that name is taken (runs started in the same second: seeds launched together), so no
    two runs share one. Returns it and the folders made for it, deepest first."""
    base = _default_workdir(regime, root)
    parents = _missing_folders(os.path.dirname(base))
    os.makedirs(os.path.dirname(base), exist_ok=True)
    n = 1
    while True:
        path = base if n == 1 else f"{base}-{n}"
        try:
            os.mkdir(path)  # atomic: of two runs racing for a name, one gets it
            return path, [path, *parents]
        except FileExistsError:
            n += 1


def _tidy_unstarted(workdir: str, made: list[str]) -> bool:
    """After a run stopped before training: remove the workdir (and the folders above it) this
    command made (``made``, deepest first), if it holds only set-up files; True if removed."""
    if not made:
        return False
    from jaxtl import workdir as workdir_lib

    workdir_lib.Lock(workdir).release()  # this run's own lock, else kept
    if not workdir_lib.remove_unstarted(workdir):
        return False
    _remove_empty(made[1:])  # runs/ when this command made it
    return True


def _remove_empty(folders: list[str]) -> None:
    """Remove each of ``folders`` (deepest first) that is empty; stop at the first that is not."""
    for f in folders:
        try:
            os.rmdir(f)
        except OSError:
            return


def version() -> str:
    """``--version``: jaxtl's and the numerical stack's versions (what a bug report needs)."""
    from importlib import metadata

    import jaxtl

    stack = ", ".join(f"{m} {metadata.version(m)}" for m in ("jax", "jaxlib", "flax", "optax"))
    return f"jaxtl {jaxtl.__version__} ({stack}; Python {sys.version.split()[0]})"


def usage(prog: str) -> str:
    """``--help``: the forms of the command, the regimes and the shipped configs."""
    from jaxtl.regimes import REGIMES

    command = _command(prog)
    forms = __doc__.split("\n\n")[1].replace("    jaxtl ", f"    {command} ")
    return (
        f"{prog}: transfer learning for NLP in JAX: train in a regime, predict, export.\n\n"
        f"{forms}\n\n"
        f"regimes: {', '.join(REGIMES)}\n"
        f"shipped configs (--config=NAME[:tiny]): {', '.join(packaged_configs())}\n"
        "--config.KEY=VALUE overrides any key of the config (all keys: jaxtl/config.py); "
        "--workdir=DIR (default runs/<regime>-<time> here) resumes a run started there; "
        "--debug shows tracebacks; --version the versions; --seeds=0,1,2 runs each seed and "
        "--sweep=KEY=V1|V2 each value (a grid when repeated), then reports mean ± std over "
        "seeds and the best setting on dev (jaxtl/sweep.py; --sweep_jobs=N runs N at once, "
        "--sweep_devices=0,1 one per device); --lr_find runs the learning-rate "
        "range test and suggests a rate (jaxtl/lr_find.py).\n"
        f"{command} --predict --help, {command} --export --help, {command} --embed --help and "
        f"{command} --glue_submission --help: their options."
    )


def main(prog: str = "jaxtl") -> None:
    """The command line (``prog`` names it in one-line errors: ``jaxtl`` or ``launch.py``)."""
    args = sys.argv[1:]
    if "--predict" in args or "--export" in args:
        return predict_main(sys.argv, prog)
    if "--glue_submission" in args:
        return glue_submission_main(sys.argv, prog)
    if "--embed" in args:
        return embed_main(sys.argv, prog)
    if "-h" in args or "--help" in args:
        print(usage(prog))
        return
    if "--version" in args:
        print(version())
        return
    if "--helpfull" not in args and not any(a == "--regime" or a.startswith("--regime=")
                                            for a in args):  # fmt: skip
        from jaxtl.regimes import REGIMES

        sys.exit(f"{prog}: --regime is required ({' | '.join(REGIMES)}), or --predict / "
                 f"--export; {_command(prog)} --help shows the usage")  # fmt: skip
    try:
        sys.argv = single_spec_overrides(config_args(sys.argv))
    except ValueError as e:
        sys.exit(f"{prog}: {e}")
    if "--lr_find" in args:
        return lr_find_main(args, prog)
    if any(a.split("=", 1)[0] in sweep_flags() for a in args):
        return sweep_main(args, sys.argv, prog)
    from absl import app, flags
    from ml_collections import config_flags

    from jaxtl.regimes import REGIMES

    flags.DEFINE_enum("regime", None, list(REGIMES), "Which transfer regime to run.")
    config_flags.DEFINE_config_file(
        "config", None, "FILE.py or a shipped config's NAME, [:tiny]; default: the regime's own."
    )
    flags.DEFINE_string("workdir", None, "Output directory (default: a new folder under runs/).")
    flags.DEFINE_bool("debug", False, "Show the full traceback of user errors.")
    flags.mark_flag_as_required("regime")

    def run(argv):
        del argv
        from jaxtl import regimes, runtime

        runtime.quiet_garbage_collector()
        logging.getLogger().setLevel(logging.INFO)
        logging.getLogger("absl").setLevel(logging.WARNING)
        logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.INFO)
        for noisy in ("orbax", "absl", "jax._src", "etils"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        config = flags.FLAGS.config
        regime = flags.FLAGS.regime
        try:
            regimes.check_config(regime, config)
        except ValueError as e:
            sys.exit(f"{prog}: {e}")
        runtime.init_distributed(config)  # before anything touches a JAX device
        workdir = flags.FLAGS.workdir
        if os.path.isfile(workdir or ""):
            sys.exit(f"{prog}: --workdir={workdir} is a file; a run's workdir is a folder (a new "
                     "one, or a run's to resume)")  # fmt: skip
        if workdir or config.distributed.enabled:
            # Hosts of a distributed run must all name one folder (a shared --workdir, README):
            # the default name is not claimed per host.
            workdir = workdir or _default_workdir(regime)
            made = _missing_folders(workdir)  # removed again if a user error leaves them empty
        else:
            workdir, made = new_run_folder(regime)
        module = regimes.get(regime)
        # config.json is written by the run itself (jaxtl.run.prepare), after it has checked
        # that a workdir being resumed was not started with another config.
        print(f"jaxtl: regime={regime} workdir={workdir}")
        from jaxtl.train import Preempted

        try:
            module.run(config, workdir)
        except Preempted as e:  # SIGTERM / Ctrl-C: a clean stop, resumable
            print(f"jaxtl: {e}")
            sys.exit(0)
        except KeyboardInterrupt:  # Ctrl-C before training started, or a second one during it
            if flags.FLAGS.debug:
                raise
            from etils import epath

            from jaxtl import workdir as workdir_lib

            if _tidy_unstarted(workdir, made):
                said = " before training; nothing was kept"
            elif workdir_lib.has_checkpoints(epath.Path(workdir)):
                said = f"; the checkpoints in {workdir} are kept: run the same command to resume"
            else:
                said = ""
            print(f"\njaxtl: interrupted{said}", file=sys.stderr)
            sys.exit(130)  # the shell's code for a command ended by SIGINT
        except (ValueError, KeyError, RuntimeError, OSError, ImportError) as e:
            if flags.FLAGS.debug:
                raise
            if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
                _stop_on_full_disk(e, workdir)
            # A user error (bad value or file, a model not on this machine or its package not
            # installed, workdir in use, non-finite loss): one line, whatever line breaks the
            # message carried. A workdir this command made goes again when nothing was trained
            # in it, so mistyped commands do not pile up runs/ folders.
            _tidy_unstarted(workdir, made)
            sys.exit(_one_line(f"jaxtl: error: {type(e).__name__}: {e}")
                     + " (--debug shows the traceback)")  # fmt: skip
        print(f"jaxtl: done; results in {workdir}/results.json")

    def parse_flags(argv: list[str]) -> list[str]:
        # A bad --config file, argument or override stops with one line (--debug: traceback);
        # absl prints a parse error with a nested traceback, ml_collections raises its own.
        try:
            args = flags.FLAGS(argv)
            # A config file that failed to load raises only when first read.
            flags.FLAGS.config.get("train")
            return args
        except Exception as e:  # noqa: BLE001 - every parse failure is the user's input
            if any(a.lower() in ("--debug", "--debug=true", "--debug=1") for a in argv):
                raise
            # An override of a key the config lacks fails while the config loads: load it
            # without the overrides to say where the key is.
            config = flags.FLAGS["config"].value or _config_of(argv)
            sys.exit(f"{prog}: {flag_error(e, argv, config)}")

    app.run(run, flags_parser=parse_flags)


def flag_error(e: BaseException, argv: list[str], config: Any = None) -> str:
    """One line for a command-line parse failure: the flag, then the innermost reason.
    ``config``: the config as loaded before the failing override, when it loaded."""
    through = _through_a_value(config, argv)
    if through:
        return through
    section = re.match(r"flag --config\.([\w.]+)=.*Failed to parse .* as a ConfigDict", str(e))
    if section:  # a value given to a whole section: name its keys instead of a parse error
        key = section.group(1)
        node = _config_node(config, key)
        keys = sorted(node.keys()) if hasattr(node, "keys") else []
        listed = f" (its keys: {', '.join(keys)})" if keys else ""
        value = str(e).split("=", 1)[1].split(": Failed to parse", 1)[0]
        tuples = [k for k in keys if isinstance(node[k], tuple)]
        if value.lower().startswith(_SPEC_PREFIXES) and tuples:  # the user's data: its key
            example = f"--config.{key}.{tuples[0]}='{value}'"
        else:
            example = f"--config.{key}.{keys[0] if keys else 'KEY'}=VALUE"
        return (f"--config.{key} is a section of the config{listed}, not a value: set one of "
                f"its keys, e.g. {example}")  # fmt: skip
    if isinstance(e, (AttributeError, KeyError)):
        # ml_collections: an override of a key the config lacks, as a KeyError (inside an
        # AttributeError) whose message is "'stepz'\nDid you mean "steps" instead of "stepz"?".
        inner: BaseException = e
        while inner.args and isinstance(inner.args[0], BaseException):
            inner = inner.args[0]
        raw = str(inner.args[0]) if inner.args else ""
        key, _, hint = raw.strip().partition("\n")
        key = key.strip("'\"")
        named = [a.split("=")[0] for a in argv if a.startswith("--config.")
                 and key in a.split("=")[0].split(".")[1:]]  # fmt: skip
        # of several flags naming the key (--config.pretrain.steps and --config.target.steps),
        # the one whose path the config lacks
        flag = next((f for f in named if config is None
                     or not _has_path(config, f.removeprefix("--config."))),
                    named[0] if named else "--config")  # fmt: skip
        if not hint and config is not None:  # the key elsewhere: a regime's target.tasks
            where = _paths_named(config, key)
            if where:
                hint = "this config has it as " + " and ".join(f"--config.{w}" for w in where)
        return f"{flag}: the config has no key {key!r}" + (f" ({hint.strip()})" if hint else "")
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    if not lines:
        return type(e).__name__
    if "Failed loading config file" in str(e):  # ml_collections: the file itself
        return f"--config: {lines[-1]}"
    return lines[0] if len(lines) == 1 else f"{lines[0].rstrip(':')}: {lines[-1]}"


if __name__ == "__main__":
    main()
