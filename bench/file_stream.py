"""Reading a user's own TSV (a ``file:`` task) of many rows: streamed vs held whole.

    python -m bench.file_stream --rows 1000000 [--out FILE.json]

The file is SST-2 train repeated to ``rows`` rows (``bench.data_scale.write_corpus``). In a fresh
process each, jaxtl builds the task (its label set comes from a pass over the train file) and
then either iterates the split (``Task.iterate``: what the token cache and ``--predict`` read)
or loads it (``Task.load``: every example in a list). Reported: wall seconds and the process's
peak RSS.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

from bench.data_scale import write_corpus

PROBE = """
import json, resource, sys, time
from jaxtl.data import get_task
t = time.perf_counter()
task = get_task(f"file:name=s,path={sys.argv[1]},text=sentence,label=label")
built = time.perf_counter() - t
n = sum(1 for _ in task.iterate("train")) if sys.argv[2] == "stream" else len(task.load("train"))
print(json.dumps({"how": sys.argv[2], "rows": n, "build_s": built,
                  "wall_s": time.perf_counter() - t,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(rows: int, root: pathlib.Path) -> list[dict]:
    train = write_corpus(rows, root) / "SST-2" / "train.tsv"
    out = []
    for how in ("stream", "load"):
        p = subprocess.run([sys.executable, "-c", PROBE, str(train), how], capture_output=True,
                           text=True, check=True)  # fmt: skip
        out.append(json.loads(p.stdout.strip().splitlines()[-1]))
        print(out[-1], flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--out", default=None, help="write the results here as JSON")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        res = measure(args.rows, pathlib.Path(d))
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
