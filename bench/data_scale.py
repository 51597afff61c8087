"""Data at scale: tokenise-and-batch throughput and peak memory, jaxtl vs Hugging Face datasets.

    python -m bench.data_scale --rows 1000000 [--systems jaxtl,datasets] [--markdown BENCHMARKS.md]
    python bench/run.py --cases data_scale        (1M rows both systems, 10M rows jaxtl)

The corpus is SST-2 train repeated to ``rows`` rows, written once as ``SST-2/train.tsv`` under a
temporary data dir. Both systems use the packaged MiniLM tokenizer, ``max_length`` 128, batches
of 32, and run in a fresh process each (peak RSS is the process tree's: the datasets map workers
count), over the same number of batches (one epoch of ``ceil(rows / 32)``):

- jaxtl: ``token_cache.encode_split`` (streamed chunks through the fast tokenizer's batch call,
  written to memory-mapped shards) + ``batching.TrainBatches`` (buckets 32/64/128, rows read from
  the mapping by index). ``cold``: empty cache; ``warm``: the second run, a cache hit.
- jaxtl-packed: the same cache, batched as training batches by default: packed rows
  (``packing.PackedTrainBatches``, 3 rows of up to 128 tokens a step, about as many examples as
  a batch of 32), one epoch of them.
- datasets: ``Dataset.from_csv`` + ``map(tokenize, batched=True, num_proc=2)`` +
  ``DataCollatorWithPadding`` over shuffled batches (what the Trainer's loader does, without
  torch). ``cold``: empty HF datasets cache; ``warm``: its Arrow cache reused.

``--tile`` builds a jaxtl cache entry for the corpus without tokenising it, by tiling the
tokenised SST-2 rows (the corpus is those rows repeated, so the entry is the same one tokenising
writes; the run checks this on the first ``--check-rows`` rows): the batching phase's memory at
a size whose tokenisation would not fit the time box of a loaded machine.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

REPO = pathlib.Path(__file__).resolve().parent.parent
BATCH = 32
MAX_LENGTH = 128
BUCKETS = (32, 64, 128)
SST2 = REPO.parent / "shared" / "data" / "SST-2"


class TreeRss:
    """Peak resident set of this process and its children, sampled every ``every`` seconds."""

    def __init__(self, every: float = 0.05):
        import psutil

        self.proc, self.every, self.peak = psutil.Process(), every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self) -> int:
        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except Exception:  # a map worker that just exited
                pass
        self.peak = max(self.peak, total)
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self.sample()
        return self.peak / 2**20


def write_corpus(
    rows: int, root: pathlib.Path, source: pathlib.Path = SST2, folder: str = "SST-2"
) -> pathlib.Path:
    """``root/rows-N`` holding ``folder``/{train,dev}.tsv with ``rows`` train rows (``source``'s
    train repeated, SST-2 by default); written once."""
    data = root / f"rows-{rows}"
    train = data / folder / "train.tsv"
    if train.is_file():
        return data
    lines = (source / "train.tsv").read_text().splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    train.parent.mkdir(parents=True, exist_ok=True)
    tmp = train.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write(header)
        full, part = divmod(rows, len(body))
        block = "".join(body)
        for _ in range(full):
            f.write(block)
        f.write("".join(body[:part]))
    os.replace(tmp, train)
    shutil.copy(source / "dev.tsv", data / folder / "dev.tsv")
    return data


def _tokenizer():
    from jaxtl.models import hf

    return hf.load_tokenizer(hf.resolve("minilm"))


PACKED_ROWS = 3  # rows of a packed step: about 29 SST-2 sentences, the others' batch


def work_jaxtl(rows: int, data: str, cache: str, batches: int, packed: bool = False
               ) -> dict[str, Any]:  # fmt: skip
    rss = TreeRss()
    t0 = time.perf_counter()
    from jaxtl.data import batching, get_task, packing, token_cache

    tok = _tokenizer()
    task = get_task("sst2", data)
    enc = token_cache.encode_split(task, "train", tok, max_length=MAX_LENGTH, root=cache,
                                   min_rows=0, progress=False)  # fmt: skip
    assert enc is not None and len(enc) == rows, (None if enc is None else len(enc), rows)
    t1 = time.perf_counter()
    tok_rss = rss.sample() / 2**20
    if packed:  # one epoch of packed rows (batches = 0), or at most ``batches`` of them
        it: Any = packing.PackedTrainBatches(enc, batch_size=PACKED_ROWS, buckets=BUCKETS,
                                             seed=0, pad_id=0)  # fmt: skip
        epoch = it.batches_per_epoch()
        batches = min(batches, epoch) if batches else epoch
    else:
        it = batching.TrainBatches(enc, batch_size=BATCH, buckets=BUCKETS, seed=0, pad_id=0)
    real = 0
    for _ in range(batches):
        real += int(next(it)["example_weight"].sum())
    t2 = time.perf_counter()
    return {"tokenise_s": t1 - t0, "batch_s": t2 - t1, "wall_s": t2 - t0, "batches": batches,
            "examples_batched": real, "rss_after_tokenise_mib": tok_rss,
            "peak_rss_mib": rss.stop()}  # fmt: skip


def work_datasets(rows: int, data: str, cache: str, batches: int) -> dict[str, Any]:
    rss = TreeRss()
    t0 = time.perf_counter()
    os.environ["HF_DATASETS_CACHE"] = cache
    import datasets
    import numpy as np
    from transformers import DataCollatorWithPadding

    datasets.disable_progress_bars()
    tok = _tokenizer()
    path = os.path.join(data, "SST-2", "train.tsv")
    # GLUE TSV: tab separated, bare quotes inside sentences (QUOTE_NONE = 3).
    ds = datasets.Dataset.from_csv(path, sep="\t", quoting=3, cache_dir=cache, keep_in_memory=False)

    def tokenize(b: dict) -> dict:
        return tok(b["sentence"], truncation=True, max_length=MAX_LENGTH)

    ds = ds.map(tokenize, batched=True, num_proc=2, remove_columns=["sentence"])
    assert len(ds) == rows, (len(ds), rows)
    t1 = time.perf_counter()
    tok_rss = rss.sample() / 2**20
    collate = DataCollatorWithPadding(tok, return_tensors="np")
    order = np.random.default_rng(0).permutation(len(ds))
    real = 0
    for b in range(batches):
        idx = order[(b * BATCH) % len(ds) :][:BATCH]
        cols = ds[idx.tolist()]
        feats = [dict(zip(cols, vals)) for vals in zip(*cols.values())]
        real += int(collate(feats)["attention_mask"].shape[0])
    t2 = time.perf_counter()
    return {"tokenise_s": t1 - t0, "batch_s": t2 - t1, "wall_s": t2 - t0, "batches": batches,
            "examples_batched": real, "rss_after_tokenise_mib": tok_rss,
            "peak_rss_mib": rss.stop()}  # fmt: skip


def tile_cache(rows: int, data: str, cache: str, check_rows: int) -> dict[str, Any]:
    """Write the jaxtl cache entry of the ``rows``-row corpus by tiling the tokenised SST-2 rows,
    after checking the tiling against tokenising the corpus's first ``check_rows`` rows."""
    import numpy as np

    from jaxtl.data import get_task, token_cache, tokenize

    tok = _tokenizer()
    task = get_task("sst2", data)
    base = tokenize.encode(task, get_task("sst2", str(SST2.parent)).load("train"), tok,
                           max_length=MAX_LENGTH)  # fmt: skip
    n = len(base)
    keyed = token_cache.entry_key(task, "train", tok, max_length=MAX_LENGTH)
    assert keyed is not None
    folder = os.path.join(cache, keyed[0])
    # The corpus's row i is SST-2's row i % n: the "examples" are row numbers, each chunk's
    # encoding is the tokenised SST-2 rows they name.
    token_cache.build_entry(folder, range(rows), lambda chunk: base.subset([i % n for i in chunk]),
                            keyed[1], progress=False)  # fmt: skip
    meta = token_cache.check_entry(folder)
    assert meta is not None and meta["rows"] == rows
    got = token_cache.open_entry(folder, meta)
    head = list(itertools.islice(task.iterate("train"), check_rows))
    ref = tokenize.encode(task, head, tok, max_length=MAX_LENGTH)
    same = all(np.array_equal(got.input_ids[i], ref.input_ids[i]) for i in range(len(ref)))
    same &= bool(np.array_equal(np.asarray(got.label[: len(ref)]), ref.label))
    if not same:
        raise SystemExit("tiled cache differs from tokenising the corpus")
    return {"rows": rows, "checked_rows": len(ref), "entry": folder}


def _worker(args: argparse.Namespace) -> None:
    fn = {"jaxtl": work_jaxtl, "jaxtl-packed": functools.partial(work_jaxtl, packed=True),
          "datasets": work_datasets}[args.worker]  # fmt: skip
    out = fn(args.rows, args.data, args.cache, args.batches)
    print(json.dumps(out))


def run_worker(
    system: str, rows: int, data: pathlib.Path, cache: pathlib.Path, max_batches: int = 0
) -> dict[str, Any]:
    batches = math.ceil(rows / BATCH)
    batches = min(batches, max_batches) if max_batches else batches
    if system == "jaxtl-packed":  # its own epoch (the worker counts it), or the cap
        batches = max_batches
    cmd = [sys.executable, "-m", "bench.data_scale", "--worker", system, "--rows", str(rows),
           "--data", str(data), "--cache", str(cache), "--batches", str(batches)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{system} worker failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    # Throughput counts every example tokenised; with a batch cap, tokenising all rows and
    # batching a part of them.
    res["examples_per_s"] = rows / res["wall_s"]
    return res


def measure(
    rows_list: list[int], systems: list[str], root: pathlib.Path, *,
    warm: Sequence[str] = ("jaxtl", "datasets"), tile: Sequence[int] = (),
    check_rows: int = 200_000, max_batches: int = 0,
) -> dict[str, Any]:  # fmt: skip
    from bench.common import machine

    out: dict[str, Any] = {"machine": machine(), "batch_size": BATCH, "max_length": MAX_LENGTH,
                           "runs": []}  # fmt: skip
    for rows in rows_list:
        data = write_corpus(rows, root)
        for system in systems:
            if system.startswith("jaxtl") and rows in tile:
                cache = pathlib.Path(tempfile.mkdtemp(prefix="jaxtl-", dir=root))
                info = tile_cache(rows, str(data), str(cache), min(check_rows, rows))
                print(f"[data_scale] tiled jaxtl cache for {rows} rows: {info}", flush=True)
                phases = ["warm"]
            else:
                cache = pathlib.Path(tempfile.mkdtemp(prefix=f"{system}-", dir=root))
                phases = ["cold", "warm"] if system in warm else ["cold"]
            for phase in phases:
                load = os.getloadavg()[0]
                res = run_worker(system, rows, data, cache, max_batches)
                res.update(system=system, rows=rows, phase=phase, load_average=load,
                           tiled=rows in tile and system.startswith("jaxtl"))  # fmt: skip
                out["runs"].append(res)
                print(f"[data_scale] {system} {rows} {phase}: {res['examples_per_s']:.0f} ex/s, "
                      f"wall {res['wall_s']:.1f}s (tokenise {res['tokenise_s']:.1f}s), peak RSS "
                      f"{res['peak_rss_mib']:.0f} MiB, load {load:.1f}", flush=True)  # fmt: skip
            shutil.rmtree(cache, ignore_errors=True)
    for rows in rows_list:
        by = {(r["system"], r["phase"]): r for r in out["runs"] if r["rows"] == rows}
        for phase in ("cold", "warm"):
            for system, key in (("jaxtl", ""), ("jaxtl-packed", ":packed")):
                a, b = by.get((system, phase)), by.get(("datasets", phase))
                if a and b:
                    out.setdefault("ratios", {})[f"{rows}:{phase}{key}"] = (
                        a["examples_per_s"] / b["examples_per_s"]
                    )
    return out


def render(res: dict[str, Any], path: pathlib.Path | None = None) -> str:
    """The BENCHMARKS.md section (between the ``bench:data_scale`` markers)."""
    m = res["machine"]
    # Merged files can come from different machines: then each row names its CPU.
    cpus = {r.get("cpu", m["cpu_model"]) for r in res["runs"]}
    per_row = len(cpus) > 1
    rows = []
    for r in res["runs"]:
        cpu = f" {r.get('cpu', m['cpu_model'])} |" if per_row else ""
        rows.append(
            f"| {r['system']} | {r['rows']:,} |{cpu} {r['phase']}"
            f"{' (tiled)' if r.get('tiled') else ''}"
            f" | {r['batches']:,} | {r['examples_per_s']:,.0f} | {r['wall_s']:.1f} | {r['tokenise_s']:.1f} | "
            f"{r['batch_s']:.1f} | {r['rss_after_tokenise_mib']:,.0f} | {r['peak_rss_mib']:,.0f} "
            f"| {r['load_average']:.1f} |"
        )
    where = "CPU per row" if per_row else f"CPU: {m['cpu_model']}"
    lines = [
        f"{where} ({m['nproc']} cores), shared; batch {res['batch_size']}, "
        f"max_length {res['max_length']}, the packaged MiniLM tokenizer; one epoch of "
        "`ceil(rows / 32)` batches. Peak RSS is the process tree's (datasets' map workers "
        "count); `cold` = empty cache, `warm` = second run of the same config.",
        "",
        f"| system | rows |{' CPU |' if per_row else ''} run | batches | examples/s | wall s | "
        "tokenise s | batch s | RSS after tokenise MiB | peak RSS MiB | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if per_row else ""),
        *rows,
        "",
    ]
    for k, v in sorted(res.get("ratios", {}).items()):
        n, phase = k.split(":", 1)  # "rows:phase[:packed][ (file)]"
        who = "jaxtl (packed rows)" if ":packed" in phase else "jaxtl"
        phase = phase.replace(":packed", "")
        lines.append(f"- {who} / datasets throughput at {int(n):,} rows, {phase}: {v:.2f}×")
    if res.get("command"):
        lines += ["", f"Command: `{res['command']}`" + (f" → `{path}`" if path else "")]
    for cmd, where in res.get("commands", []):
        lines += ["", f"Command: `{cmd}` → `{where}`"]
    return "\n".join(lines)


def merged(paths: list[str]) -> dict[str, Any]:
    """Several results files as one table (each run keeps its command and file)."""
    out: dict[str, Any] = {"runs": [], "ratios": {}, "commands": []}
    for p in paths:
        res = json.loads(pathlib.Path(p).read_text())
        for k in ("machine", "batch_size", "max_length"):
            out.setdefault(k, res[k])
        out["runs"] += [{"cpu": res["machine"]["cpu_model"], **r} for r in res["runs"]]
        out["ratios"].update({f"{k} ({pathlib.Path(p).name})": v
                              for k, v in res.get("ratios", {}).items()})  # fmt: skip
        out["commands"].append((res.get("command", "?"), p))
    return out


def case_data_scale(s: Any = None, *, quick: bool = False) -> dict[str, Any]:
    """The bench/run.py case: 1M rows both systems, 10M rows jaxtl (100k both with --quick)."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="jaxtl-data-scale-"))
    try:
        res = measure([100_000] if quick else [1_000_000], ["jaxtl", "datasets"], root)
        if not quick:
            big = measure([10_000_000], ["jaxtl"], root)
            res["runs"] += big["runs"]
        return res
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default="1000000", help="comma-separated corpus sizes")
    p.add_argument("--systems", default="jaxtl,datasets")
    p.add_argument("--warm", default="jaxtl,datasets", help="systems run a second (warm) time")
    p.add_argument("--max-batches", type=int, default=0, help="batch at most this many")
    p.add_argument("--tile", default="", help="sizes whose jaxtl cache is tiled (see docstring)")
    p.add_argument("--check-rows", type=int, default=200_000)
    p.add_argument("--root", default="", help="folder for corpora and caches (default: a temp)")
    p.add_argument("--out", default="", help="write the results JSON here")
    p.add_argument("--markdown", default="", help="rewrite the data_scale section of this file")
    p.add_argument("--worker", default="", help=argparse.SUPPRESS)
    p.add_argument("--data", default="", help=argparse.SUPPRESS)
    p.add_argument("--cache", default="", help=argparse.SUPPRESS)
    p.add_argument("--batches", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--render", default="", help="results JSON files (comma-separated) to render")
    args = p.parse_args(argv)
    if args.render:
        body = render(merged(args.render.split(",")))
        print(body)
        if args.markdown:
            update_section(pathlib.Path(args.markdown), body)
        return None
    if args.worker:
        args.rows = int(args.rows)
        return _worker(args)
    root = pathlib.Path(args.root or tempfile.mkdtemp(prefix="jaxtl-data-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    rows = [int(r) for r in args.rows.split(",")]
    tile = [int(r) for r in args.tile.split(",") if r]
    res = measure(rows, args.systems.split(","), root, warm=args.warm.split(","), tile=tile,
                  check_rows=args.check_rows, max_batches=args.max_batches)  # fmt: skip
    from bench.common import command_line

    res["command"] = command_line("python -m bench.data_scale", list(argv or sys.argv[1:]))
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(render(res))
    if args.markdown:
        update_section(pathlib.Path(args.markdown), render(res, pathlib.Path(args.out or "-")))
    if not args.root:
        shutil.rmtree(root, ignore_errors=True)


def update_section(md: pathlib.Path, body: str) -> None:
    import re

    text = md.read_text()
    start, end = "<!-- bench:data_scale:start -->", "<!-- bench:data_scale:end -->"
    block = f"{start}\n{body}\n{end}"
    pat = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pat.search(text):
        text = pat.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + f"\n\n## 11. Data at scale: tokenise and batch\n\n{block}\n"
    md.write_text(text)


if __name__ == "__main__":
    main()
