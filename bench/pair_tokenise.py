"""Tokenising a large sentence-pair split into the token cache, by path: the transformers
tokenizer call per chunk (what pairs took before the flat encoder handled them), the flat
encoder in the run's process, and the flat encoder in worker processes.

    python -m bench.pair_tokenise --rows 199200 --modes encode,flat,workers,workers,flat,encode

The corpus is GLUE RTE train repeated to ``rows`` pairs (written once under ``--root``); each
mode builds the cache entry from empty in a fresh process (``max_length`` 128, the packaged
MiniLM tokenizer) and prints its seconds and the MD5 of the entry's token files, which must be
the same for every mode.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import shutil
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
MODES = ("encode", "flat", "workers")


def work(mode: str, data: str, cache: str) -> dict:
    """One build in this process (``python -m bench.pair_tokenise --work MODE DATA CACHE``)."""
    sys.path.insert(0, str(REPO))
    from jaxtl.data import get_task, token_cache
    from jaxtl.models import hf

    tok = hf.load_tokenizer(hf.resolve("minilm"))
    task = get_task("rte", data)
    if mode == "encode":
        token_cache.flat_encoder = lambda *a, **k: None  # type: ignore[assignment]
    shutil.rmtree(cache, ignore_errors=True)
    t0 = time.perf_counter()
    enc = token_cache.encode_split(task, "train", tok, max_length=128, root=cache, min_rows=0,
                                   progress=False, processes=2 if mode == "workers" else 1)  # fmt: skip
    seconds = time.perf_counter() - t0
    assert enc is not None
    (entry,) = [p for p in pathlib.Path(cache).iterdir() if not p.name.startswith(".")]
    md5 = hashlib.md5()
    for name in ("offsets", "input_ids", "token_type_ids"):
        md5.update((entry / f"{name}.bin").read_bytes())
    return {"mode": mode, "rows": len(enc), "seconds": seconds, "md5": md5.hexdigest()}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=199_200)
    p.add_argument("--modes", default="encode,flat,workers,workers,flat,encode")
    p.add_argument("--root", default="/tmp/pair-tokenise")
    p.add_argument("--out", default=None)
    p.add_argument("--data-dir", default=None,
                   help="folder holding RTE/ (default: $JAXTL_DATA_DIR or ../shared/data)")  # fmt: skip
    p.add_argument("--work", nargs=3, metavar=("MODE", "DATA", "CACHE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.work:
        print(json.dumps(work(*args.work)))
        return {}
    from bench.common import command_line, default_data_dir, machine
    from bench.data_scale import write_corpus

    root = pathlib.Path(args.root)
    rte = pathlib.Path(args.data_dir or default_data_dir()) / "RTE"
    data = write_corpus(args.rows, root / "rte", rte, folder="RTE")
    runs = []
    for mode in args.modes.split(","):
        if mode not in MODES:
            raise SystemExit(f"--modes: unknown {mode!r}; known: {MODES}")
        out = subprocess.run(
            [sys.executable, "-m", "bench.pair_tokenise", "--work", mode, str(data),
             str(root / f"cache-{mode}")],
            cwd=REPO, capture_output=True, text=True, check=True,
        )  # fmt: skip
        run = json.loads(out.stdout.strip().splitlines()[-1])
        runs.append(run)
        print(f"[pair_tokenise] {mode}: {run['rows']} pairs in {run['seconds']:.2f} s "
              f"(md5 {run['md5'][:12]})", flush=True)  # fmt: skip
    res = {"command": command_line("python -m bench.pair_tokenise", list(argv or sys.argv[1:])),
           "machine": machine(), "rows": args.rows, "runs": runs,
           "same_entry": len({r["md5"] for r in runs}) == 1}  # fmt: skip
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
