"""What a piece of MiniLM's train step costs: the step compiled in several variants, timed in one
process with the variants alternated, so machine noise hits them alike.

    python -m bench.step_variants --batch-size 3 --seq-len 128 --rounds 12
    python -m bench.step_variants --batch-size 32 --variants base,ynn_reduce --rounds 6

Variants (``base`` is the step ``jaxtl.train`` runs for ``--strategy``, full fine-tuning by
default: AdamW + clip, dropout):

- ``no_dropout``: the encoder runs deterministically (``switch_loss(encoder_dropout=False)``).
- ``partitionable_rng`` / ``classic_rng``: dropout's bits from JAX's partitionable threefry (a
  run's default on several devices) / the classic one (its default on one); ``base`` takes the
  run's default for this device count (``jaxtl.runtime.partitionable_rng``).
- ``sgd``: plain SGD instead of the AdamW chain (what the optimizer's passes over every
  parameter cost).
- ``ynn_reduce``: reductions through jaxlib's YNNPACK library
  (``xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_REDUCE``), XLA's own kernels for
  the rest; ``ynnpack``: every YNNPACK fusion jaxlib enables by default (CPU only);
  ``xla_kernels``: none of them (``cpu_kernels=xla``; ``base`` follows the run's default,
  ``auto``, which takes YNNPACK's for train steps of at most
  ``jaxtl.runtime.YNNPACK_MAX_TOKENS`` tokens);
  ``ynn=TYPE+TYPE...``: exactly these YNNPACK fusion types (of ``dot``, ``individual_dot``,
  ``eltwise``, ``reduce``), XLA's kernels for the rest.
- ``xla:NAME=VALUE;NAME=VALUE``: jaxtl's step compiled with exactly these XLA options (for
  instance ``xla:xla_cpu_prefer_vector_width=512``); values ``true``/``false`` and integers are
  passed as such.
- ``rows_half``: twice the rows of half the length (the same tokens a step).
- ``padded``: the last 30% of each row padding (pad id 0, masked), the second half of each
  row's real tokens of type 1 (a sentence pair): what repeated ids cost the embeddings'
  gradients.

``--model bert-base`` is the accelerator case's model (``bench/run.py --cases accelerator``):
BERT-base with random weights and bf16 compute, no checkpoint needed. On a GPU one step is a
few milliseconds: ``--steps N`` times N steps back to back per sample (one wait at the end).

With ``--profile N``, N more steps of each variant run under ``jax.profiler`` and the row gets
``kernels``: the time per step by kind of operation (kernel names without their numeric suffix:
``dot``, ``wrapped_reduce-window``, ``multiply_add_fusion``...), every kind, most first (the
printout shows the top 12); on a GPU or TPU the device's kernels only, not the host's. On the
CPU, dots and other thunks run on the intra-op thread pool, so kinds can overlap and their sum
is not the step's wall time; what counts is the share one kind takes and how it moves between
variants.

    python -m bench.step_variants --model bert-base --batch-size 256 --steps 10 \
        --variants base,no_dropout,padded --rounds 4 --profile 3

Every row reports the seconds its step took to lower and compile (in this process, after the
variants before it), the median and minimum step time, the median of the per-round ratios to
``base``, and the minor page faults and system CPU time per step (``getrusage``: the compiled
step's temporaries are mapped afresh on each call). Batches are random tokens without padding,
as in ``bench/run.py``'s step case; the first step's loss is printed so variants that should
agree can be checked.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import resource
import tempfile
import time
from typing import Any

import numpy as np

VARIANTS = ("base", "no_dropout", "partitionable_rng", "classic_rng", "sgd", "ynn_reduce",
            "ynnpack", "xla_kernels", "rows_half", "padded")  # fmt: skip
RANDOM_BERT_BASE = "bert-base"  # --model: the accelerator case's random BERT-base, not loaded
PADDED_FRACTION = 0.3
_YNN = "xla_cpu_experimental_ynn_fusion_type"
YNN_TYPES = ("dot", "individual_dot", "eltwise", "reduce")


def _ynn_types(name: str) -> list[str] | None:
    """The fusion types a ``ynn=a+b`` variant names (None for any other variant); raises
    ValueError for a type this bench does not know."""
    if not name.startswith("ynn="):
        return None
    types = [t for t in name[len("ynn=") :].split("+") if t]
    bad = [t for t in types if t not in YNN_TYPES]
    if bad or not types:
        raise ValueError(f"{name}: fusion types are {'+'.join(YNN_TYPES)} (got {bad or 'none'})")
    return types


def _xla_option(item: str) -> tuple[str, Any]:
    """``NAME=VALUE`` as a compiler option (booleans and integers typed; raises ValueError)."""
    key, sep, value = item.partition("=")
    if not sep or not key.startswith("xla_"):
        raise ValueError(f"{item!r}: an XLA option is xla_NAME=VALUE")
    if value.lower() in ("true", "false"):
        return key, value.lower() == "true"
    return key, int(value) if value.lstrip("-").isdigit() else value


def _options(name: str) -> dict[str, str] | None:
    """The XLA options variant ``name`` compiles with (None: jaxtl's own)."""
    if name.startswith("xla:"):
        return dict(_xla_option(item) for item in name[len("xla:") :].split(";") if item)
    types = _ynn_types(name)
    if types is not None:  # XLA takes the repeated enum as a comma-separated list
        return {_YNN: ",".join(f"LIBRARY_FUSION_TYPE_{t.upper()}" for t in types)}
    named = {
        "ynn_reduce": {_YNN: "LIBRARY_FUSION_TYPE_REDUCE"},
        "ynnpack": {},
        "xla_kernels": {_YNN: ""},
    }
    return named.get(name)


def _build(name: str, batch_size: int, seq_len: int, settings: Any, strategy: str) -> Any:
    """Variant ``name`` of the step, compiled on its own state (``bench.jaxtl_side.TrainSetup``:
    ``run()`` takes one step, ``loss()`` one step returning its loss)."""
    import optax

    from bench import jaxtl_side as J
    from jaxtl import objectives, runtime

    b, t = (batch_size * 2, seq_len // 2) if name == "rows_half" else (batch_size, seq_len)
    encoder = None
    if settings.model == RANDOM_BERT_BASE:
        from bench import cases

        encoder = J.random_bert(cases.BERT_BASE, settings.seed)
    model, _ = J.build_model(settings, strategy, tokenizer=False, encoder=encoder)
    batch = J.random_batch(int(model.encoder.tied_embedding().shape[0]), b, t, settings.seed)
    if name == "padded":
        real = t - int(t * PADDED_FRACTION)
        batch["input_ids"][:, real:] = 0
        batch["attention_mask"][:, real:] = 0
        batch["token_type_ids"][:, real // 2 : real] = 1
    loss_fn = None
    if name == "no_dropout":
        loss_fn = objectives.switch_loss([J.task_data(settings.data_dir)], encoder_dropout=False)
    options = _options(name)
    saved = runtime.compiler_options
    if options is not None:  # the step reads jaxtl's options when it is built
        runtime.compiler_options = lambda *_: options
    try:
        return J.train_setup(
            settings, strategy, batch, model=model, tokenizer=False, loss_fn=loss_fn,
            tx=optax.sgd(settings.lr) if name == "sgd" else None,
            partitionable_rng={"partitionable_rng": True, "classic_rng": False}.get(name),
        )  # fmt: skip
    finally:
        runtime.compiler_options = saved


# Kinds a profile prints (its results JSON keeps them all).
PRINTED_KINDS = 12

# Trace events of the runtime itself rather than of one kernel.
_NOT_KERNELS = ("$", "ThunkExecutor", "PjitFunction", "end: ", "CommonPjRt", "ParseArguments")


def kernel_times(run: Any, steps: int, top: int | None = None) -> list[dict[str, Any]]:
    """``steps`` calls of ``run()`` under ``jax.profiler``: milliseconds per step and kernels per
    step for each kind of kernel in the trace (its name without the numeric suffix), most first,
    every kind unless ``top`` cuts the list; where the trace has a device
    (``/device:GPU:0``...), that device's events only."""
    import jax

    with tempfile.TemporaryDirectory() as folder:
        jax.profiler.start_trace(folder)
        try:
            for _ in range(steps):
                run()
        finally:
            jax.profiler.stop_trace()
        (trace,) = glob.glob(os.path.join(folder, "**", "*.trace.json.gz"), recursive=True)
        with gzip.open(trace) as f:
            events = json.load(f)["traceEvents"]
    return kernels_by_kind(events, steps, top)


def kernels_by_kind(events: list[dict], steps: int, top: int | None = None) -> list[dict[str, Any]]:
    """A trace's complete events summed by kind (name without its numeric suffix) per step,
    most first (the ``top`` most where given); a device's events only where the trace has a
    device process (``/device:...``), else every event that is not the runtime's own."""
    devices = {e["pid"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"
               and str(e["args"].get("name", "")).startswith("/device:")}  # fmt: skip
    us: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("ph") != "X" or str(e.get("name", "")).startswith(_NOT_KERNELS):
            continue
        if devices and e.get("pid") not in devices:
            continue
        kind = re.sub(r"\.\d+$", "", e["name"])
        us[kind] += e["dur"]
        count[kind] += 1
    return [
        {"kind": k, "ms_per_step": v / steps / 1e3, "per_step": count[k] / steps}
        for k, v in us.most_common(top)
    ]


def measure(
    variants: list[str],
    batch_size: int,
    seq_len: int,
    rounds: int,
    *,
    warmup: int = 2,
    model: str = "minilm",
    data_dir: str | None = None,
    strategy: str = "full",
    profile: int = 0,
    steps: int = 1,
) -> dict[str, Any]:
    from bench.common import Settings, machine

    at_start = machine()  # its load average is the one before anything compiles or runs
    settings = Settings(batch_size=batch_size, seq_lens=(seq_len,), model=model)
    if data_dir:
        settings.data_dir = data_dir
    runs, first_loss = {}, {}
    for name in variants:
        runs[name] = _build(name, batch_size, seq_len, settings, strategy)
        first_loss[name] = runs[name].loss()
        for _ in range(warmup - 1):
            runs[name].run()
    times: dict[str, list[float]] = {n: [] for n in variants}
    faults: dict[str, list[int]] = {n: [] for n in variants}
    system: dict[str, list[float]] = {n: [] for n in variants}
    for _ in range(rounds):
        for name in variants:
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            runs[name].run_many(steps)
            times[name].append((time.perf_counter() - t0) / steps)
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            faults[name].append(r1.ru_minflt - r0.ru_minflt)
            system[name].append(r1.ru_stime - r0.ru_stime)
    base = variants[0]
    rows = []
    for name in variants:
        ts = np.array(times[name])
        rows.append({
            "variant": name,
            "median_ms": float(np.median(ts) * 1e3),
            "min_ms": float(ts.min() * 1e3),
            "ratio_to_first_median": float(np.median(ts / np.array(times[base]))),
            "minor_faults_per_step": float(np.median(faults[name]) / steps),
            "system_cpu_ms_per_step": float(np.median(system[name]) * 1e3 / steps),
            "first_loss": first_loss[name],
            "cpu_kernels": runs[name].cpu_kernels,  # read from the compiled step
            "compile_s": runs[name].compile_s,  # lowering and compiling, before the timed steps
            "times_s": times[name],
        })  # fmt: skip
        if profile:
            # Every kind: on a small model the ranking shifts with the machine's load (the
            # tiny test model's dots rank 8th to 12th of ~60 kinds), so a cut here would make
            # whether a kind is reported depend on the load. The printout shows the top.
            rows[-1]["kernels"] = kernel_times(runs[name].run, profile)
    return {
        "batch_size": batch_size,
        "seq_len": seq_len,
        "rounds": rounds,
        "steps_per_sample": steps,
        "model": model,
        "strategy": strategy,
        "machine": {
            **at_start,
            "load_average_at_end": list(os.getloadavg()),
        },
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-size", type=int, default=3, help="rows per step (3 = the full epoch)")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--strategy", default="full", choices=("full", "frozen", "bottom_half", "lora"),
                    help="what trains, as in bench/run.py's step case")  # fmt: skip
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help=f"comma-separated, the first is the reference; of {', '.join(VARIANTS)}, "
                         "ynn=TYPE+TYPE, xla:NAME=VALUE;NAME=VALUE")  # fmt: skip
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="then trace N steps of each variant: kernel time by kind")  # fmt: skip
    ap.add_argument("--model", default="minilm",
                    help="minilm (packaged), a local HF BERT dir, or bert-base (random weights, "
                         "bf16 compute: the accelerator case's model)")  # fmt: skip
    ap.add_argument("--steps", type=int, default=1,
                    help="steps back to back per timed sample (a GPU's step is milliseconds)")  # fmt: skip
    ap.add_argument("--data-dir", default=None, help="where SST-2/ is (the task's label set)")
    ap.add_argument("--out", help="write the results JSON here")
    args = ap.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS and not v.startswith(("ynn=", "xla:"))]
    if unknown or not variants:
        ap.error(f"--variants: unknown {unknown or '(none given)'}; choose from {VARIANTS} "
                 f"or ynn=TYPE+TYPE (of {'+'.join(YNN_TYPES)}) or xla:NAME=VALUE;...")  # fmt: skip
    if args.steps < 1:
        ap.error(f"--steps: {args.steps}; at least 1")
    try:
        [_options(v) for v in variants]
    except ValueError as e:
        ap.error(f"--variants: {e}")
    res = measure(variants, args.batch_size, args.seq_len, args.rounds, model=args.model,
                  data_dir=args.data_dir, strategy=args.strategy,
                  profile=args.profile, steps=args.steps)  # fmt: skip
    print(f"{args.strategy}, B={args.batch_size} T={args.seq_len}, {args.rounds} alternated rounds "
          f"of {args.steps} step(s), "
          f"{res['machine']['cpu_model']}, load at end {res['machine']['load_average_at_end']}")  # fmt: skip
    print("| variant | CPU kernels | compile s | median ms | min ms | / first (median of rounds) "
          "| minor faults/step | system CPU ms/step | first loss |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in res["rows"]:
        print(f"| {r['variant']} | {r['cpu_kernels']} | {r['compile_s']:.2f} | "
              f"{r['median_ms']:.1f} | "
              f"{r['min_ms']:.1f} | {r['ratio_to_first_median']:.3f} | "
              f"{r['minor_faults_per_step']:.0f} | {r['system_cpu_ms_per_step']:.0f} | "
              f"{r['first_loss']:.6f} |")  # fmt: skip
    for r in res["rows"]:
        if "kernels" in r:
            print(f"\n{r['variant']}: kernel time by kind (ms/step, kernels/step), "
                  f"top {min(PRINTED_KINDS, len(r['kernels']))} of {len(r['kernels'])}")  # fmt: skip
            for k in r["kernels"][:PRINTED_KINDS]:
                print(f"  {k['ms_per_step']:9.2f}  {k['per_step']:6.0f}  {k['kind']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
