"""jaxtl against transformers + PyTorch, side by side; writes JSON and regenerates BENCHMARKS.md.

    python bench/run.py [--quick] [--cases step,forward,...] [--out bench/results/NAME.json]
                        [--data-dir DIR] [--accelerator]

Cases: step (train-step time per freezing strategy, with XLA FLOPs), forward (jitted encoder
forward), e2e (SST-2, jaxtl regime vs HF Trainer vs KerasHub; --full-epoch: one epoch of all of
train, the e2e case alone; --seeds 0,1,2: every system once per seed, judged on the means;
--no-torch / --no-keras leave a system out), cache (SST-2 head epochs on cached
frozen-encoder features, encoder pass included, vs recomputing the encoder; --full: all of
train), memory (optimizer state and peak RSS, one process each), scaling (FSDP over 1-8
fake CPU devices), accelerator (BERT-base tokens/s and MFU; only with --accelerator on a GPU/TPU),
padding (SST-2 pad-token fraction),
compile (the same launch twice on an empty persistent compilation cache: compile seconds,
hits and misses of each). Installs nothing; needs torch and accelerate (test extras).

The settings flags (--model, --batch-size, ...) exist for the tiny configuration of
tests/test_bench.py; the tables in BENCHMARKS.md come from the defaults or --quick.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import sys
import time

# Runs as a script from anywhere: make ``bench`` and ``jaxtl`` importable.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench import cases, report  # noqa: E402
from bench.common import (  # noqa: E402
    BENCH_DIR,
    REPO,
    Settings,
    command_line,
    default_data_dir,
    machine,
)


def int_list(text: str) -> tuple[int, ...]:
    """A comma-separated list of integers (``--seeds 0,1,2``); anything else is a usage error
    naming the value, not a traceback."""
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers"
        ) from None


# Cases that time or load nothing of PyTorch's: they run where torch is not installed (a Python
# 3.12+ venv without the test extra, to measure the newest jax line there).
TORCH_FREE_CASES = frozenset({"compile", "padding", "scaling", "data_scale"})


def _torch_threads(names: list[str]) -> int | None:
    """PyTorch's intra-op threads set to the cores JAX uses, or None when torch is absent and
    every case asked for runs without it; a case that needs torch stops here, naming it."""
    try:
        from bench import torch_side
    except ModuleNotFoundError as e:
        if e.name != "torch":
            raise
        needs = sorted(set(names) - TORCH_FREE_CASES)
        if needs:
            raise SystemExit(
                f"--cases {','.join(needs)}: needs torch (pip install -e '.[test]'); without "
                f"it only {','.join(sorted(TORCH_FREE_CASES))} run"
            ) from None
        return None
    return torch_side.set_threads()


def settings_from(args: argparse.Namespace) -> Settings:
    s = Settings(data_dir=args.data_dir)
    if args.quick:
        # Same shapes as the full run, fewer repetitions and smaller data subsets.
        s.pairs = 3
        s.train_examples = 2048
        s.cache_examples = 2048
        s.memory_steps = 1
        s.scaling_seq_len = 64
        s.scaling_steps = 2
    for name in ("model", "batch_size", "pairs", "train_examples", "dev_examples",
                 "padding_examples", "cache_examples", "cache_epochs", "cache_pairs", "memory_steps", "scaling_seq_len",
                 "scaling_steps", "warmup", "checkpoint_every", "checkpoint_pairs",
                 "families_layers", "families_only"):  # fmt: skip
        v = getattr(args, name)
        if v is not None:
            setattr(s, name, v)
    s.keras = args.keras
    s.torch = args.torch
    if args.seeds:
        if len(set(args.seeds)) != len(args.seeds):  # a repeated seed would shrink the spread
            raise SystemExit(f"--seeds {','.join(map(str, args.seeds))}: a seed appears twice")
        s.seeds = args.seeds
    if args.cpu_kernels:
        s.cpu_kernels = args.cpu_kernels
    s.quiet_gc = not args.default_gc
    if args.full:
        s.cache_examples = 0  # feature extraction on all of SST-2 train (the case)
    if args.seq_lens:
        s.seq_lens = args.seq_lens
    if args.accelerator_batch_sizes:
        s.accelerator_batch_sizes = args.accelerator_batch_sizes
    if args.scaling_devices:
        s.scaling_devices = args.scaling_devices
    return s


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions, data subsets")
    p.add_argument("--full", action="store_true",
                   help="the cache case on all of SST-2 train, also with --quick")  # fmt: skip
    p.add_argument("--cases", default=",".join(cases.CASES), help="comma-separated case names")
    p.add_argument("--full-epoch", action="store_true",
                   help="the e2e_full case alone: e2e on one epoch of all of SST-2 train")  # fmt: skip
    p.add_argument("--out", default=None, help="results JSON (default bench/results/<date>.json)")
    p.add_argument("--data-dir", default=default_data_dir(), help="folder holding SST-2/")
    p.add_argument("--accelerator", action="store_true", help="run the BERT-base GPU/TPU case")
    p.add_argument("--accelerator-batch-sizes", default=None, type=int_list,
                   help="accelerator case batch sizes, e.g. 32,256 (the default)")  # fmt: skip
    p.add_argument("--no-keras", dest="keras", action="store_false",
                   help="leave KerasHub out of the step and e2e cases")  # fmt: skip
    p.add_argument("--markdown", default=str(REPO / "BENCHMARKS.md"),
                   help="file whose tables to regenerate ('' = none)")  # fmt: skip
    p.add_argument("--render", default=None, metavar="RESULTS_JSON",
                   help="only regenerate the markdown tables from an earlier results file")  # fmt: skip
    p.add_argument(
        "--no-torch", dest="torch", action="store_false", help="e2e cases: leave the HF Trainer out"
    )
    p.add_argument(
        "--seeds",
        default=None,
        type=int_list,
        help="e2e cases: comma-separated seeds, every system once per seed "
        "(ratios and accuracies on the means)",
    )
    p.add_argument("--model", default=None, help="'minilm' (default) or a local HF directory")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--seq-lens", default=None, type=int_list, help="e.g. 128,64")
    p.add_argument("--pairs", type=int, default=None, help="timed A/B pairs per case")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--train-examples", type=int, default=None)
    p.add_argument("--dev-examples", type=int, default=None)
    p.add_argument("--padding-examples", type=int, default=None)
    p.add_argument("--cache-examples", type=int, default=None)
    p.add_argument("--cache-epochs", type=int, default=None)
    p.add_argument("--cache-pairs", type=int, default=None, help="cache: run pairs, ABBA")
    p.add_argument("--memory-steps", type=int, default=None)
    p.add_argument("--checkpoint-every", type=int, default=None,
                   help="checkpoint case: steps between saves (default 8)")  # fmt: skip
    p.add_argument("--checkpoint-pairs", type=int, default=None,
                   help="checkpoint case: alternated rounds (default 2)")  # fmt: skip
    p.add_argument(
        "--families-layers", type=int, default=None, help="families: blocks per model (default 4)"
    )
    p.add_argument(
        "--families-only",
        type=lambda v: tuple(x for x in v.split(",") if x),
        default=None,
        help="families: these model types only, comma-separated (default: all)",
    )
    p.add_argument("--scaling-devices", default=None, type=int_list, help="e.g. 1,2,4,8")
    p.add_argument("--scaling-seq-len", type=int, default=None)
    p.add_argument("--scaling-steps", type=int, default=None)
    p.add_argument("--cpu-kernels", default=None, choices=("auto", "xla", "ynnpack"),
                   help="jaxtl's CPU kernels (config key cpu_kernels; default auto)")  # fmt: skip
    p.add_argument("--default-gc", action="store_true",
                   help="e2e cases: jaxtl with CPython's garbage-collector defaults, not the "
                        "jaxtl command's (jaxtl.runtime.quiet_garbage_collector)")  # fmt: skip
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    if args.render:
        path = pathlib.Path(args.render)
        res = json.loads(path.read_text())
        report.update_markdown(pathlib.Path(args.markdown), res, path)
        print(f"[bench] updated {args.markdown} from {path}")
        return res
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    if args.full_epoch:
        names = ["e2e_full"]
    # Cases outside the default run: data_scale (bench/data_scale.py), e2e_full (--full-epoch).
    known = [*cases.CASES, "data_scale", "e2e_full"]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise SystemExit(f"--cases: unknown {unknown}; known: {known}")
    s = settings_from(args)
    if args.accelerator:
        # PyTorch shares the GPU with JAX in this process: JAX's default is to take 75% of the
        # device's memory at start, which leaves PyTorch too little at B=256 on a 16 GB card.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    needs_data = {"e2e", "e2e_full", "cache", "padding", "step", "forward", "checkpoint"} & set(
        names
    )
    if needs_data and not (pathlib.Path(s.data_dir) / "SST-2").is_dir():
        raise SystemExit(f"--data-dir {s.data_dir!r}: no SST-2/ folder there")

    if args.cpu_kernels:  # per program: KerasHub in the same process keeps jaxlib's default
        from jaxtl import runtime

        runtime.set_cpu_kernels(args.cpu_kernels)  # workers: Settings.cpu_kernels
    torch_threads = _torch_threads(names)
    started = datetime.datetime.now(datetime.UTC)
    results: dict = {
        "command": command_line("python bench/run.py", argv),
        "date": started.isoformat(timespec="seconds"),
        "quick": bool(args.quick),
        "machine": {**machine(), "torch_threads": torch_threads},
        "settings": s.to_json(),
        "cpu_kernels": s.cpu_kernels,
        "cases": {},
        "case_wall_s": {},
    }
    for name in names:
        print(f"[bench] {name} ...", flush=True)
        t0 = time.perf_counter()
        if name == "accelerator":
            results["cases"][name] = cases.case_accelerator(s, args.accelerator)
        elif name == "data_scale":
            from bench import data_scale

            results["cases"][name] = data_scale.case_data_scale(s, quick=args.quick)
        else:
            results["cases"][name] = getattr(cases, f"case_{name}")(s)
        results["case_wall_s"][name] = time.perf_counter() - t0
        print(f"[bench] {name} done in {results['case_wall_s'][name]:.0f}s", flush=True)
    results["total_wall_s"] = sum(results["case_wall_s"].values())

    out = pathlib.Path(args.out) if args.out else (
        BENCH_DIR / "results" / f"{started:%Y%m%d-%H%M%S}{'-quick' if args.quick else ''}.json"
    )  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"[bench] wrote {out}")
    if args.markdown:
        report.update_markdown(pathlib.Path(args.markdown), results, out)
        print(f"[bench] updated {args.markdown}")
    return results


if __name__ == "__main__":
    main()
