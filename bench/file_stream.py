"""Reading a user's own file of many rows (a ``file:`` TSV, an ``hf:`` Parquet file): streamed
vs held whole.

    python -m bench.file_stream --rows 1000000 [--formats tsv,parquet] [--out FILE.json]

The file is SST-2 train repeated to ``rows`` rows (``bench.data_scale.write_corpus``; the
Parquet file holds the same rows, written by pyarrow). In a fresh process each, jaxtl builds
the task (its label set comes from a pass over the train file) and then either iterates the
split (``Task.iterate``: what the token cache and ``--predict`` read) or loads it
(``Task.load``: every example in a list). Reported: wall seconds, the process's peak RSS
and its peak anonymous RSS (sampled every 50 ms: the memory it holds, without the pages of
files it maps; Parquet: ``datasets`` first converts the file to its Arrow cache, which the task then
memory-maps; the cache is emptied before each process, so both pay for it).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

from bench.data_scale import write_corpus

PROBE = """
import json, resource, sys, threading, time
from jaxtl.data import get_task
peak_anon = [0]
def sample():  # the largest RssAnon seen: memory the process holds, not the file pages it maps
    while True:
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                peak_anon[0] = max(peak_anon[0], int(line.split()[1]))
        time.sleep(0.05)
threading.Thread(target=sample, daemon=True).start()
t = time.perf_counter()
task = get_task(f"{sys.argv[3]}:name=s,path={sys.argv[1]},text=sentence,label=label")
built = time.perf_counter() - t
n = sum(1 for _ in task.iterate("train")) if sys.argv[2] == "stream" else len(task.load("train"))
print(json.dumps({"how": sys.argv[2], "rows": n, "build_s": built,
                  "wall_s": time.perf_counter() - t,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "peak_anon_mib": peak_anon[0] / 1024}))
"""


def parquet_copy(tsv: pathlib.Path) -> pathlib.Path:
    """The TSV's rows as a Parquet file beside it (tab-separated, no quoting, as GLUE's)."""
    import pyarrow.csv as pv
    import pyarrow.parquet as pq

    out = tsv.with_suffix(".parquet")
    if not out.is_file():
        opts = pv.ParseOptions(delimiter="\t", quote_char=False)
        pq.write_table(pv.read_csv(tsv, parse_options=opts), out)
    return out


def measure(rows: int, root: pathlib.Path, formats: tuple[str, ...] = ("tsv",)) -> list[dict]:
    train = write_corpus(rows, root) / "SST-2" / "train.tsv"
    out = []
    for fmt in formats:
        path, reader = (train, "file") if fmt == "tsv" else (parquet_copy(train), "hf")
        for how in ("stream", "load"):
            cache = root / "hf_cache"
            shutil.rmtree(cache, ignore_errors=True)
            env = {**os.environ, "HF_DATASETS_CACHE": str(cache)}
            p = subprocess.run([sys.executable, "-c", PROBE, str(path), how, reader],
                               capture_output=True, text=True, check=True, env=env)  # fmt: skip
            out.append({"format": fmt, **json.loads(p.stdout.strip().splitlines()[-1])})
            print(out[-1], flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--formats", default="tsv", help="comma-separated: tsv, parquet")
    p.add_argument("--out", default=None, help="write the results here as JSON")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        res = measure(args.rows, pathlib.Path(d), tuple(args.formats.split(",")))
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
