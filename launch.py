"""jaxtl's command line: parse, resolve and save the config, then hand over to a regime.

    python launch.py --regime=REGIME [--config=configs/FILE.py[:tiny]] [--config.KEY=VALUE ...]
                     [--workdir=DIR]
    python launch.py --predict --workdir=DIR --input=FILE [--output=OUT.jsonl] [--task=NAME]
                     [--input_format=auto|lines|jsonl|task]
    python launch.py --export --workdir=DIR --output=FOLDER

REGIME: self_supervised | unsupervised_sequential | multitask | supervised_sequential.
Without --config, configs/REGIME.py is used. ``:tiny`` after the file name (passed to its
``get_config``) runs the same stages and strategy at smoke-test size, about a minute on a 2-core
CPU (sizes in configs/tiny.py): ``--config=configs/multitask.py:tiny``. Re-running with the same
--workdir resumes from its latest good checkpoint. On a TPU VM every worker runs the same command
line (with --config.distributed.enabled=True).
"""

from __future__ import annotations

import datetime
import errno
import logging
import os
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent


def _default_config_arg(argv: list[str]) -> list[str]:
    """Insert --config=configs/<regime>.py when no --config was given (overrides still apply)."""
    has_config = any(a == "--config" or a.startswith("--config=") for a in argv)
    if has_config:
        return argv
    regime = None
    for i, a in enumerate(argv):
        if a.startswith("--regime="):
            regime = a.split("=", 1)[1]
        elif a == "--regime" and i + 1 < len(argv):
            regime = argv[i + 1]
    if regime is None:
        return argv
    from jaxtl.regimes import REGIMES

    if regime not in REGIMES:
        sys.exit(f"launch.py: unknown regime {regime!r}; choose one of: {', '.join(REGIMES)}")
    return argv[:1] + [f"--config={HERE / 'configs' / f'{regime}.py'}"] + argv[1:]


def predict_main(argv: list[str]) -> None:
    """``--predict``: run a finished workdir's selected model on a file; ``--export``: write it
    in Hugging Face layout. No regime, no config: both read the workdir."""
    import argparse

    parser = argparse.ArgumentParser(prog="launch.py --predict | --export")
    parser.add_argument("--predict", action="store_true")
    parser.add_argument("--export", action="store_true", help="export to --output (a folder)")
    parser.add_argument("--workdir", required=True, help="a finished run's workdir")
    parser.add_argument("--input", help="input file ('-' = stdin)")
    parser.add_argument("--output", default="-", help="output JSONL ('-' = stdout)")
    parser.add_argument("--task", default=None, help="task name, when the run has several")
    parser.add_argument(
        "--input_format",
        default="auto",
        help="auto | lines (one text per line; tab = pair) | jsonl | task",
    )
    args = parser.parse_args(argv[1:])
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.WARNING)
    logging.getLogger("absl").setLevel(logging.ERROR)  # orbax's notes on params-only restores
    from jaxtl.predictor import load, predict_command

    try:
        if args.export:
            if args.output == "-":
                raise ValueError("--export needs --output=FOLDER")
            written = load(args.workdir).export(args.output)
            print(f"jaxtl: exported {', '.join(sorted(written))} to {args.output}")
            return
        if not args.input:
            raise ValueError("--predict needs --input=FILE (or - for stdin)")
        n = predict_command(args.workdir, args.input, args.output, args.task, args.input_format)
    except (ValueError, FileNotFoundError) as e:  # user errors: one line, no traceback
        sys.exit(f"launch.py: {e}")
    if args.output != "-":
        print(f"jaxtl: {n} predictions written to {args.output}")


def main() -> None:
    if "--predict" in sys.argv[1:] or "--export" in sys.argv[1:]:
        return predict_main(sys.argv)
    sys.argv = _default_config_arg(sys.argv)
    from absl import app, flags
    from ml_collections import config_flags

    from jaxtl.regimes import REGIMES

    flags.DEFINE_enum("regime", None, list(REGIMES), "Which transfer regime to run.")
    config_flags.DEFINE_config_file("config", None, "FILE.py[:tiny]; default configs/REGIME.py.")
    flags.DEFINE_string("workdir", None, "Output directory (default: a new folder under runs/).")
    flags.DEFINE_bool("debug", False, "Show the full traceback of user errors.")
    flags.mark_flag_as_required("regime")

    def run(argv):
        del argv
        from jaxtl import regimes, runtime

        logging.getLogger().setLevel(logging.INFO)
        logging.getLogger("absl").setLevel(logging.WARNING)
        logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.INFO)
        for noisy in ("orbax", "absl", "jax._src", "etils"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        config = flags.FLAGS.config
        regime = flags.FLAGS.regime
        runtime.init_distributed(config)  # before anything touches a JAX device
        workdir = flags.FLAGS.workdir
        if not workdir:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            workdir = os.fspath(HERE / "runs" / f"{regime}-{stamp}")
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
        except (ValueError, KeyError, FileNotFoundError, RuntimeError) as e:
            if flags.FLAGS.debug:
                raise
            # A user error (bad value, file, workdir in use, non-finite loss): one line.
            sys.exit(f"jaxtl: error: {type(e).__name__}: {e} (--debug shows the traceback)")
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT) or flags.FLAGS.debug:
                raise
            # A full disk: files are written whole or not at all and a checkpoint is committed
            # only when complete, so what is on disk is consistent and the next run resumes.
            from jaxtl import workdir as workdir_lib

            workdir_lib.Lock(workdir).release()
            # Orbax's writer threads, cut short by the full disk, go on printing tracebacks about
            # their closed event loop: silence stderr for them, write the message last, leave.
            # The message starts a line of its own: a thread may have written part of a line
            # before stderr was silenced.
            sys.stderr.flush()
            real = os.dup(2)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
            os.write(real, (f"\njaxtl: error: no space left on device writing {e.filename or '?'}; "
                            "the files written before are whole and the last good checkpoint is "
                            "kept: free space and run the same command to resume\n").encode())  # fmt: skip
            os._exit(1)
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
            sys.exit(f"launch.py: {flag_error(e, argv)}")

    app.run(run, flags_parser=parse_flags)


def flag_error(e: BaseException, argv: list[str]) -> str:
    """One line for a command-line parse failure: the flag, then the innermost reason."""
    if isinstance(e, (AttributeError, KeyError)):
        # ml_collections: an override of a key the config lacks, as a KeyError (inside an
        # AttributeError) whose message is "'stepz'\nDid you mean "steps" instead of "stepz"?".
        inner: BaseException = e
        while inner.args and isinstance(inner.args[0], BaseException):
            inner = inner.args[0]
        raw = str(inner.args[0]) if inner.args else ""
        key, _, hint = raw.strip().partition("\n")
        key = key.strip("'\"")
        flag = next((a.split("=")[0] for a in argv if a.startswith("--config.")
                     and key in a.split("=")[0].split(".")[1:]), "--config")  # fmt: skip
        return f"{flag}: the config has no key {key!r}" + (f" ({hint.strip()})" if hint else "")
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    if not lines:
        return type(e).__name__
    if "Failed loading config file" in str(e):  # ml_collections: the file itself
        return f"--config: {lines[-1]}"
    return lines[0] if len(lines) == 1 else f"{lines[0].rstrip(':')}: {lines[-1]}"


if __name__ == "__main__":
    main()
