"""The benchmark cases. Each ``case_<name>(s: Settings) -> dict`` returns JSON-able results.

Cases that need a fresh process (peak RSS, a different fake-device count) run
``python -m bench.worker`` per configuration and collect the JSON line it prints.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from bench.common import (
    REPO,
    TASK,
    Settings,
    alternate,
    median,
    model_dir,
    peak_rss_mib,
    seed_summary,
)

STEP_STRATEGIES = ("full", "frozen", "bottom_half", "lora")
KERAS_STRATEGIES = ("full", "frozen", "lora")  # KerasHub has no partial freezing preset


def _vocab(s: Settings) -> int:
    return int(json.loads((model_dir(s.model) / "config.json").read_text())["vocab_size"])


# ------------------------------------------------------------------------------ 1. step time
def case_step(s: Settings) -> dict[str, Any]:
    """Train-step time per strategy and length, jaxtl vs PyTorch alternated, plus XLA FLOPs."""
    from bench import jaxtl_side as J
    from bench import keras_side as K
    from bench import torch_side as T

    why_not = K.available() if s.keras else "off (--no-keras)"
    keras = why_not is None
    if not keras:
        print(f"  step: KerasHub left out: {why_not}", flush=True)
    rows = []
    for t in s.seq_lens:
        batch = J.random_batch(_vocab(s), s.batch_size, t, s.seed)
        for strategy in STEP_STRATEGIES:
            model, _ = J.build_model(s, strategy, tokenizer=False)
            params = J.params_of(model)
            jx = J.train_setup(s, strategy, batch, model=model)
            tx = T.train_setup(s, strategy, params, batch)
            kx = (
                K.train_setup(s, strategy, batch)
                if keras and strategy in KERAS_STRATEGIES
                else None
            )
            for _ in range(s.warmup):
                jx.run()
                tx.run()
                if kx is not None:
                    kx.run()
            timing = alternate(jx.run, tx.run, s.pairs, kx.run if kx is not None else None)
            if kx is not None:
                timing["keras_trainable_params"] = kx.trainable_params
            row = {
                "seq_len": t,
                "batch_size": s.batch_size,
                "strategy": strategy,
                "jaxtl_compile_s": jx.compile_s,
                "jaxtl_flops": jx.flops,
                "jaxtl_cpu_kernels": jx.cpu_kernels,
                "jaxtl_trainable_params": jx.trainable_params,
                "torch_trainable_params": tx.trainable_params,
                "jaxtl_opt_state_bytes": jx.opt_state_bytes,
                "torch_opt_state_bytes": T.optimizer_state_bytes(tx.opt),
                **timing,
            }
            rows.append(row)
            print(f"  step T={t} {strategy}: jaxtl {row['jaxtl_median_s']:.3f}s "
                  f"torch {row['torch_median_s']:.3f}s ratio {row['ratio_median']:.2f}"
                  + (f" keras {row['keras_median_s']:.3f}s ratio {row['ratio_keras_median']:.2f}"
                     if kx is not None else ""), flush=True)  # fmt: skip
            del jx, tx, kx, model
            gc.collect()
    return {"rows": rows, "derived": _step_derived(rows, s)}


def _step_derived(rows: list[dict], s: Settings) -> dict[str, Any]:
    """Feature-extraction/full ratios (goal <= 0.35) and the bottom-half saving vs its model."""
    out: dict[str, Any] = {}
    for t in s.seq_lens:
        by = {r["strategy"]: r for r in rows if r["seq_len"] == t}
        if "full" not in by:
            continue
        full = by["full"]
        d: dict[str, Any] = {}
        for strat in ("frozen", "bottom_half", "lora"):
            if strat not in by:
                continue
            r = by[strat]
            d[strat] = {
                "jaxtl_time_ratio": r["jaxtl_median_s"] / full["jaxtl_median_s"],
                "torch_time_ratio": r["torch_median_s"] / full["torch_median_s"],
                "jaxtl_flops_ratio": r["jaxtl_flops"] / full["jaxtl_flops"],
            }
        # Backward ~ 2x forward, so a step is ~1/3 forward, ~2/3 backward; freezing the bottom k
        # of L blocks (and the embeddings) removes their whole backward: (2/3)(k/L) of the step.
        d["bottom_half_predicted_saving"] = (2.0 / 3.0) * 0.5
        d["frozen_goal_ratio"] = 0.35
        out[str(t)] = d
    return out


# ------------------------------------------------------------------------------ 2. forward
def case_forward(s: Settings) -> dict[str, Any]:
    from bench import jaxtl_side as J
    from bench import torch_side as T

    t = max(s.seq_lens)
    batch = J.random_batch(_vocab(s), s.batch_size, t, s.seed)
    model, _ = J.build_model(s, "full", tokenizer=False)
    jf = J.forward_setup(model, batch)
    tf = T.forward_setup(s, batch)
    for _ in range(s.warmup):
        jf.run()
        tf.run()
    timing = alternate(jf.run, tf.run, s.pairs)
    return {"seq_len": t, "batch_size": s.batch_size, "jaxtl_compile_s": jf.compile_s,
            "jaxtl_flops": jf.flops, **timing}  # fmt: skip


# ------------------------------------------------------------------------------ 3. end to end
def _sst2(s: Settings):
    from jaxtl.data import get_task

    task = get_task(TASK, s.data_dir)
    train = task.load("train")
    dev = task.load("dev")
    if s.train_examples:
        train = train[: s.train_examples]
    if s.dev_examples:
        dev = dev[: s.dev_examples]
    return task, train, dev


def case_e2e(s: Settings) -> dict[str, Any]:
    """SST-2: jaxtl's multitask regime (one task, packed rows) vs HF Trainer (and KerasHub).

    jaxtl runs twice, each in a fresh process with the same new compile-cache folder: first
    with the folder empty (a config's first run on a machine: every program compiled), and
    again after the other systems (a second run of the same config: the programs loaded from
    the cache). Both report their compile seconds and cache hits/misses. On all of train
    (``e2e_full``) the second run is left out.

    With several ``s.seeds`` every system runs once per seed (seed by seed, the systems in
    turn, each seed with a compile cache of its own), and the ratios and the equal-accuracy
    rule (within 0.5 points) are taken on the means over seeds: one seed's dev accuracy moves
    by about a point with the head's initialisation and the data order alone."""
    task, train, dev = _sst2(s)
    steps = math.ceil(len(train) / s.batch_size)
    out: dict[str, Any] = {
        "train_examples": len(train),
        "dev_examples": len(dev),
        "steps": steps,
        "batch_size": s.batch_size,
        "lr": s.lr,
    }
    seeds = s.seeds or (s.seed,)
    runs = []
    for seed in seeds:
        if len(seeds) > 1:
            print(f"  e2e seed {seed}", flush=True)
        runs.append({"seed": seed, **_e2e_once(dataclasses.replace(s, seed=seed), steps, train,
                                               dev)})  # fmt: skip
    # One seed: its systems at the top level, as before seeds; ratios and verdicts either way
    # from the one summary (over one run, the run's own ratios and gaps).
    if len(runs) == 1:
        return {**out, **runs[0], **seed_summary(runs)}
    return {**out, "seeds": list(seeds), "runs": runs, **seed_summary(runs)}


def _e2e_once(s: Settings, steps: int, train, dev) -> dict[str, Any]:
    """One seed of the e2e case: every system once, their results by system name (see
    :func:`case_e2e`; :func:`bench.common.seed_summary` takes the ratios)."""
    out: dict[str, Any] = {}
    cache_folder = tempfile.mkdtemp(prefix="jaxtl-bench-e2e-")
    # The folder goes whichever way the case ends, a failed system included.
    try:
        job = ["e2e", str(steps), str(len(train)), str(len(dev)), os.path.join(cache_folder, "xla"),
               json.dumps(s.to_json())]  # fmt: skip
        out["jaxtl"] = _worker(job, _device_env(1))
        print(f"  e2e jaxtl (compile cache empty): {out['jaxtl']['wall_s']:.1f}s acc "
              f"{out['jaxtl']['accuracy']:.4f}", flush=True)  # fmt: skip
        if s.torch:
            gc.collect()
            out["torch"] = _e2e_trainer(s, steps, train, dev)
            print(f"  e2e trainer: {out['torch']['wall_s']:.1f}s acc "
                  f"{out['torch']['accuracy']:.4f}", flush=True)  # fmt: skip
        else:
            print("  e2e: HF Trainer left out (--no-torch)", flush=True)
        from bench import keras_side as K

        why_not = K.available() if s.keras else "off (--no-keras)"
        if why_not is None:
            gc.collect()
            out["keras"] = K.e2e(s, list(train), list(dev))
            print(f"  e2e keras: {out['keras']['wall_s']:.1f}s acc {out['keras']['accuracy']:.4f}",
                  flush=True)  # fmt: skip
        else:
            print(f"  e2e: KerasHub left out: {why_not}", flush=True)
        if not s.train_examples:
            # The full epoch (e2e_full): a second jaxtl epoch would repeat the first for what the
            # quick case measures already (seconds of compilation against minutes of training).
            return out
        out["jaxtl_warm"] = _worker(job, _device_env(1))
        print(f"  e2e jaxtl (compile cache warm): {out['jaxtl_warm']['wall_s']:.1f}s acc "
              f"{out['jaxtl_warm']['accuracy']:.4f}", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(cache_folder, ignore_errors=True)
    return out


def e2e_jaxtl(
    s: Settings, steps: int, n_train: int, n_dev: int, *, compile_cache: str
) -> dict[str, Any]:
    """jaxtl's side of the e2e case (``bench.worker e2e`` runs it in a fresh process)."""
    from jaxtl import assembly
    from jaxtl import config as config_lib
    from jaxtl.data import batching, packing
    from jaxtl.data.prepare import prepare_tasks
    from jaxtl.regimes import multitask

    c = config_lib.base_config()
    c.cpu_kernels = s.cpu_kernels
    multitask.add_config(c)
    c.seed = s.seed
    c.model.name = s.model
    c.model.compute_dtype = "float32"
    c.data.dir = s.data_dir
    c.data.max_train_examples = n_train
    c.data.max_eval_examples = n_dev
    c.tasks.names = (TASK,)
    c.train.steps = steps
    c.train.batch_size = s.batch_size
    c.train.eval_every = s.eval_every
    c.train.log_every = max(1, steps)
    c.train.save_best = s.save_best
    c.train.progress = False
    c.checkpoint.every_steps = s.checkpoint_every
    c.checkpoint.async_save = s.checkpoint_async
    c.checkpoint.async_best = s.best_async
    c.optim.lr = s.lr
    c.compile_cache = compile_cache
    config_lib.finalize(c)
    # The same recipe as the Trainer's, one epoch: packed rows (data.packing, on for MiniLM)
    # hold several examples each, so an epoch is fewer steps of batch_size rows.
    pre = assembly.load_encoder(c)
    packed = assembly.packing(c, pre.model)
    td = prepare_tasks((TASK,), c, pre.tokenizer, with_eval=False, packed=packed)[0]
    if packed:
        # train.batch_size counts packed rows, each holding several examples: take as many rows
        # as hold about s.batch_size examples, so every system sees the same examples per update
        # (and about as many updates per epoch) — the same recipe, not a larger batch.
        per_row = n_train / td.train_iter.rows_per_epoch()
        c.train.batch_size = max(1, round(s.batch_size / per_row))
        td = prepare_tasks((TASK,), c, pre.tokenizer, with_eval=False, packed=packed)[0]
        c.train.steps = c.train.log_every = steps = td.train_iter.batches_per_epoch()
    lengths, name = td.train_iter.encoded.lengths, td.task.name
    fraction = packing.padding_fraction if packed else batching.padding_fraction
    pad = fraction(
        lengths, batch_size=c.train.batch_size, buckets=tuple(c.data.buckets),
        seed=td.train_iter.seed,
    )  # fmt: skip
    del pre, td
    gc.collect()
    if s.quiet_gc:
        from jaxtl import runtime

        runtime.quiet_garbage_collector()  # as the jaxtl command sets it up
    with tempfile.TemporaryDirectory() as wd:
        t0 = time.perf_counter()
        res = multitask.run(c, wd)
        wall = time.perf_counter() - t0
        with open(os.path.join(wd, "metrics.jsonl")) as f:
            events = [json.loads(x) for x in f]
        kept = sorted(int(n) for n in os.listdir(os.path.join(wd, "checkpoints")) if n.isdigit())
    train_events = [e for e in events if e.get("split") == "train"]
    dev_acc = [e["accuracy"] for e in events if e.get("split") == "dev" and e.get("task") == name]
    compiled = [e for e in events if e.get("task") == "compilations"][-1]
    return {
        "wall_s": wall,
        "compile_seconds": compiled["compile_seconds"],
        "cache_hits": compiled["cache_hits"],
        "cache_misses": compiled["cache_misses"],
        "accuracy": float(res["joint"][name]["accuracy"]),
        "packed": packed,
        "steps": steps,
        "row_batch_size": int(c.train.batch_size),
        "examples_per_step": n_train / steps,
        "pad_fraction": pad,
        "buckets": list(c.data.buckets),
        "last_train_log": train_events[-1] if train_events else None,
        "checkpoints_kept": kept,
        "evaluations": len(dev_acc),
        # the evaluations that improved on every earlier one: each writes best/ (save_best)
        "best_saves": _improvements(dev_acc) if s.save_best else 0,
        "peak_rss_mib": peak_rss_mib(),  # the worker process's own (VmHWM)
        "what": "jaxtl.regimes.multitask.run, tasks=(glue/sst2,), "
        + (f"eval every {s.eval_every} steps" if s.eval_every else "eval at the end only"),
    }


def _improvements(scores: list[float]) -> int:
    """How many of ``scores``, in order, beat every one before them (the first always does)."""
    best, n = float("-inf"), 0
    for x in scores:
        if x > best:
            best, n = x, n + 1
    return n


def _e2e_trainer(s: Settings, steps: int, train, dev) -> dict[str, Any]:
    import torch
    from transformers import (
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from bench import jaxtl_side as J
    from bench import torch_side as T

    T.set_threads()
    # Same head initialisation as the jaxtl run: jaxtl's head is seeded by config.seed there;
    # here it is copied from a jaxtl model built with the same seed.
    jmodel, _ = J.build_model(s, "full", tokenizer=False)
    jparams = J.params_of(jmodel)
    del jmodel
    t0 = time.perf_counter()
    path = str(model_dir(s.model))
    tok = AutoTokenizer.from_pretrained(path, use_fast=True)
    model = T.build_model(s, "full", jparams)

    def rows(examples):
        enc = tok([e.text for e in examples], truncation=True, max_length=128)
        return [
            {"input_ids": enc["input_ids"][i], "token_type_ids": enc["token_type_ids"][i],
             "attention_mask": enc["attention_mask"][i], "labels": int(e.label)}
            for i, e in enumerate(examples)
        ]  # fmt: skip

    base = DataCollatorWithPadding(tok)
    counts = {"real": 0, "total": 0}

    def collate(features):
        b = base(features)
        if counting[0]:
            counts["real"] += int(b["attention_mask"].sum())
            counts["total"] += int(b["attention_mask"].numel())
        return b

    counting = [True]
    with tempfile.TemporaryDirectory() as od:
        args = TrainingArguments(
            output_dir=od,
            per_device_train_batch_size=s.batch_size,
            per_device_eval_batch_size=64,
            learning_rate=s.lr,
            weight_decay=0.01,
            warmup_steps=0.1,
            lr_scheduler_type="linear",
            max_grad_norm=1.0,
            max_steps=steps,
            save_strategy="steps" if s.checkpoint_every else "no",
            save_steps=s.checkpoint_every or 500,
            eval_strategy="no",
            logging_steps=max(1, steps),
            report_to="none",
            use_cpu=True,
            seed=s.seed,
            dataloader_num_workers=0,
            disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=rows(train), data_collator=collate)
        tr = trainer.train()
        counting[0] = False
        pred = trainer.predict(rows(dev))
        saved = sorted(int(n.split("-")[1]) for n in os.listdir(od) if n.startswith("checkpoint-"))
    wall = time.perf_counter() - t0
    acc = float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())
    return {
        "wall_s": wall,
        "train_runtime_s": float(tr.metrics.get("train_runtime", float("nan"))),
        "accuracy": acc,
        "pad_fraction": 1.0 - counts["real"] / max(1, counts["total"]),
        "optimizer": str(args.optim),
        "checkpoints_kept": saved,
        "torch_threads": torch.get_num_threads(),
        "what": "transformers.Trainer + DataCollatorWithPadding (batch-max padding)",
    }


# ------------------------------------------------------------------------------ 4. feature cache
def case_cache(s: Settings) -> dict[str, Any]:
    """SST-2 feature extraction end to end through the library (``launch.py``'s path: the
    multitask regime, ``optim.strategy=feature_extraction``): ``s.cache_epochs`` head epochs with
    the frozen encoder's features cached (``features.cache=memory``: the one encoder pass over
    train, dev and test is inside the timing) against recomputing the frozen encoder every step
    (``features.cache=off``); same recipe, same batches, so the same dev accuracy."""
    from jaxtl import assembly
    from jaxtl.data.prepare import prepare_tasks

    task, train, dev = _sst2(s)
    n_train = len(train) if not s.cache_examples else min(s.cache_examples, len(train))
    c = _cache_config(s, n_train, len(dev), steps=1, mode="off")
    pre = assembly.load_encoder(c)  # the number of steps an epoch takes (packed rows)
    packed = assembly.packing(c, pre.model)
    td = prepare_tasks((TASK,), c, pre.tokenizer, with_eval=False, packed=packed)[0]
    per_epoch = td.train_iter.batches_per_epoch()
    steps = s.cache_epochs * per_epoch
    del td, pre
    gc.collect()
    out: dict[str, Any] = {
        "train_examples": n_train,
        "dev_examples": len(dev),
        "epochs": s.cache_epochs,
        "steps": steps,
        "steps_per_epoch": per_epoch,
        "packed": packed,
        "batch_size": s.batch_size,
        "lr": s.cache_lr,
    }
    # Pairs in alternating order (A B, B A, ...): load drift on a shared machine hits both.
    runs: dict[str, list[dict[str, Any]]] = {"memory": [], "off": []}
    for i in range(max(1, s.cache_pairs)):
        for mode in ("memory", "off") if i % 2 == 0 else ("off", "memory"):
            r = _cache_run(s, _cache_config(s, n_train, len(dev), steps=steps, mode=mode))
            runs[mode].append(r)
            print(f"  cache {mode}: {r['wall_s']:.1f}s acc {r['accuracy']:.4f}", flush=True)
            gc.collect()
    for mode, rs in runs.items():
        out[mode] = {**rs[0], "wall_s": median([r["wall_s"] for r in rs]),
                     "compile_s": median([r["compile_s"] for r in rs]),
                     "extract_s": median([r["extract_s"] for r in rs]),
                     "wall_s_each": [r["wall_s"] for r in rs]}  # fmt: skip
    pairs = list(zip(runs["off"], runs["memory"]))
    out["pairs"] = len(pairs)
    out["ratio"] = median([r["wall_s"] / c["wall_s"] for r, c in pairs])
    out["ratio_each"] = [r["wall_s"] / c["wall_s"] for r, c in pairs]
    out["ratio_without_compile"] = median(
        [(r["wall_s"] - r["compile_s"]) / max(c["wall_s"] - c["compile_s"], 1e-9) for r, c in pairs]
    )
    cached, rec = out["memory"], out["off"]
    out["accuracy_gap_points"] = 100 * abs(cached["accuracy"] - rec["accuracy"])
    out["goal_ratio"] = 3.0
    return out


def _cache_config(s: Settings, n_train: int, n_dev: int, *, steps: int, mode: str):
    from jaxtl import config as config_lib
    from jaxtl.regimes import multitask

    c = config_lib.base_config()
    c.cpu_kernels = s.cpu_kernels
    multitask.add_config(c)
    c.seed = s.seed
    c.model.name = s.model
    c.model.compute_dtype = "float32"
    c.data.dir = s.data_dir
    c.data.max_train_examples = n_train
    c.data.max_eval_examples = n_dev
    c.tasks.names = (TASK,)
    c.train.steps = steps
    c.train.batch_size = s.batch_size
    c.train.eval_every = 0
    c.train.log_every = max(1, steps)
    c.train.save_best = False
    c.train.progress = False
    c.checkpoint.every_steps = 0
    c.compile_cache = "off"  # both paths compile what they run, every time
    c.optim.strategy = "feature_extraction"
    c.optim.lr = s.cache_lr
    c.features.cache = mode
    return config_lib.finalize(c)


def _cache_run(s: Settings, c) -> dict[str, Any]:
    """One run of the regime (process-internal wall time from config to dev accuracy)."""
    import logging

    from jaxtl.regimes import multitask

    extract: list[float] = []

    class Grab(logging.Handler):  # the cache's own report of its encoder pass
        def emit(self, record: logging.LogRecord) -> None:
            if "feature cache ready" in record.msg:
                extract.append(float(record.args[1]))  # type: ignore[index]

    handler = Grab()
    logging.getLogger("jaxtl.features").addHandler(handler)
    logging.getLogger("jaxtl.features").setLevel(logging.INFO)
    try:
        with tempfile.TemporaryDirectory() as wd:
            t0 = time.perf_counter()
            res = multitask.run(c, wd)
            wall = time.perf_counter() - t0
            with open(os.path.join(wd, "metrics.jsonl")) as f:
                events = [json.loads(x) for x in f]
    finally:
        logging.getLogger("jaxtl.features").removeHandler(handler)
    comp = [e for e in events if e.get("split") == "run" and e.get("task") == "compilations"]
    train = [e for e in events if e.get("split") == "train"]
    return {
        "wall_s": wall,
        "compile_s": float(comp[-1].get("compile_seconds", 0.0)) if comp else 0.0,
        "extract_s": extract[0] if extract else 0.0,
        "accuracy": float(next(v for k, v in res["joint"].items() if k != "average")["accuracy"]),
        "final_loss": float(train[-1]["loss"]) if train else float("nan"),
        "features_cache": c.features.cache,
    }


# ------------------------------------------------------------------------------ 5/6. subprocesses
def _device_env(n: int) -> dict[str, str]:
    """This process's environment with ``n`` fake CPU devices (other XLA flags kept)."""
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]  # fmt: skip
    flags.append(f"--xla_force_host_platform_device_count={n}")
    return {**os.environ, "XLA_FLAGS": " ".join(flags)}


def _worker_cmd(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "bench.worker", *args]


def _worker_result(cmd: list[str], p: subprocess.CompletedProcess) -> dict[str, Any]:
    lines = [x for x in p.stdout.splitlines() if x.startswith("{")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(lines[-1])


def _worker(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    cmd = _worker_cmd(args)
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    return _worker_result(cmd, p)


def case_memory(s: Settings) -> dict[str, Any]:
    """Optimizer-state bytes and peak RSS per (system, strategy), one process each.

    Nothing is timed here, so two workers run at once (peak RSS is per process).
    """
    from concurrent.futures import ThreadPoolExecutor

    env = _device_env(1)
    jobs = [(system, strategy) for strategy in ("full", "frozen", "lora")
            for system in ("jaxtl", "torch")]  # fmt: skip

    def one(job: tuple[str, str]) -> dict[str, Any]:
        cmd = _worker_cmd(["memory", job[0], job[1], json.dumps(s.to_json())])
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        return _worker_result(cmd, p)

    with ThreadPoolExecutor(max_workers=2) as pool:
        rows = list(pool.map(one, jobs))
    for r in rows:
        print(f"  memory {r['system']} {r['strategy']}: opt {r['opt_state_bytes'] / 2**20:.1f} "
              f"MiB, peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)  # fmt: skip
    return {"seq_len": max(s.seq_lens), "batch_size": s.batch_size, "rows": rows}


def case_scaling(s: Settings) -> dict[str, Any]:
    """FSDP over 1..8 fake CPU devices: step time, per-device param+opt bytes, compile time."""
    rows = []
    for n in s.scaling_devices:
        r = _worker(["scaling", str(n), json.dumps(s.to_json())], env=_device_env(n))
        rows.append(r)
        print(f"  scaling fsdp={n}: step {r['step_median_s']:.3f}s compile {r['compile_s']:.1f}s "
              f"per-device {r['per_device_bytes'] / 2**20:.1f} MiB", flush=True)  # fmt: skip
    return {"seq_len": s.scaling_seq_len, "batch_size": s.batch_size, "rows": rows}


# ------------------------------------------------------------------------------ 7. accelerator
PEAK_BF16_TFLOPS = {  # dense bf16 peaks from the vendors' data sheets
    "H100": 989.0,
    "H200": 989.0,
    "A100": 312.0,
    "L4": 121.0,
    "TPU v4": 275.0,
    "TPU v5 lite": 197.0,
    "TPU v5e": 197.0,
    "TPU v5p": 459.0,
    "TPU v6 lite": 918.0,
    "TPU v6e": 918.0,
}

BERT_BASE = {
    "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
    "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 512,
    "type_vocab_size": 2, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
}  # fmt: skip


def case_accelerator(s: Settings, run: bool) -> dict[str, Any]:
    """BERT-base (random init), T=128, bf16 compute: jaxtl's full train step against
    transformers + PyTorch (bf16 autocast) on the same GPU, tokens/s and MFU per batch size."""
    import jax

    backend = jax.default_backend()
    if not run or backend == "cpu":
        return {
            "available": False,
            "backend": backend,
            "reason": "no GPU/TPU in this session"
            if backend == "cpu"
            else "--accelerator not given",
        }
    rows = [
        accelerator_row(s, BERT_BASE, b, s.accelerator_seq_len) for b in s.accelerator_batch_sizes
    ]
    return {
        "available": True,
        "backend": backend,
        "device_kind": jax.devices()[0].device_kind,
        "steps_per_sample": s.accelerator_steps,
        "rows": rows,
    }


def train_flops(hf_config: dict, b: int, t: int) -> float:
    """Model FLOPs of one BERT train step (forward + backward, the usual 3x the forward):
    the matmuls of every layer (6 x weights x tokens), attention's two [T,T] products
    (12 x layers x B x T^2 x hidden) and the head; embeddings are lookups. What MFU is taken
    against, whatever the system actually executes (recomputation, dropout, padding)."""
    h, f, n = (
        hf_config["hidden_size"],
        hf_config["intermediate_size"],
        hf_config["num_hidden_layers"],
    )
    per_layer = 4 * h * h + 2 * h * f
    tokens = b * t
    return float(6 * n * per_layer * tokens + 12 * n * b * t * t * h + 6 * h * 2 * b)


def accelerator_row(s: Settings, hf_config: dict, b: int, t: int) -> dict[str, Any]:
    """jaxtl and PyTorch full fine-tuning of a random ``hf_config`` BERT at B=``b``, T=``t``,
    timed alternately, ``s.accelerator_steps`` steps a sample. PyTorch runs on CUDA when JAX
    runs on a GPU, else on the CPU (the tiny test configuration); not at all beside a TPU."""
    import jax

    from bench import jaxtl_side as J

    backend = jax.default_backend()
    model, _ = J.build_model(s, "full", encoder=J.random_bert(hf_config, s.seed))
    batch = J.random_batch(hf_config["vocab_size"], b, t, s.seed)
    st = J.train_setup(s, "full", batch, model=model)
    n = s.accelerator_steps
    st.run_many(max(1, s.warmup))
    peer = None
    if backend in ("gpu", "cpu"):
        from bench import torch_side

        peer = torch_side.accelerator_setup(
            s, hf_config, batch, "cuda" if backend == "gpu" else "cpu"
        )
        peer.run_many(max(1, s.warmup))
    timing = alternate(lambda: st.run_many(n), (lambda: peer.run_many(n)) if peer else None,
                       max(3, s.pairs))  # fmt: skip
    model_flops = train_flops(hf_config, b, t)
    kind = jax.devices()[0].device_kind
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k.lower() in kind.lower()), None)

    def side(seconds: float) -> dict[str, Any]:
        step_s = seconds / n
        return {
            "step_median_s": step_s,
            "tokens_per_s": b * t / step_s,
            "achieved_tflops": model_flops / step_s / 1e12,
            "mfu": model_flops / step_s / (peak * 1e12) if peak else None,
        }

    stats = jax.devices()[0].memory_stats() or {}
    row: dict[str, Any] = {
        "batch_size": b,
        "seq_len": t,
        "model_flops_per_step": model_flops,
        "xla_flops_per_step": st.flops,
        "peak_bf16_tflops": peak,
        "compile_s": st.compile_s,
        "jaxtl": {**side(timing["jaxtl_median_s"]), "peak_bytes": stats.get("peak_bytes_in_use")},
        "jaxtl_s": timing["jaxtl_s"],
    }
    if peer is not None:
        row["torch"] = {**side(timing["torch_median_s"]), "peak_bytes": peer.peak_bytes()}
        row["torch_s"] = timing["torch_s"]
        row["ratio_median"] = timing["ratio_median"]
    if s.accelerator_profile_steps:
        # Where jaxtl's step time goes, in the same call: the first GPU run of this case was
        # 3.4x PyTorch until a trace showed one kernel taking 45% of it (BENCHMARKS.md §7).
        from bench.step_variants import kernel_times

        row["jaxtl_kernels"] = kernel_times(st.run, s.accelerator_profile_steps, top=8)
    return row


# ------------------------------------------------------------------------------ 8. padding
def case_padding(s: Settings) -> dict[str, Any]:
    """SST-2 train pad-token fraction: packed (jaxtl's default) vs buckets 32/64/128 vs fixed 128
    vs shuffled batch-max."""
    from jaxtl.data import batching, get_task, packing, tokenize
    from jaxtl.models import hf

    task = get_task(TASK, s.data_dir)
    train = task.load("train")
    if s.padding_examples:
        train = train[: s.padding_examples]
    tok = hf.load_tokenizer(model_dir(s.model))
    enc = tokenize.encode(task, train, tok, max_length=128)
    lengths = enc.lengths
    b = s.batch_size
    bucketed = batching.padding_fraction(lengths, batch_size=b, buckets=(32, 64, 128), seed=s.seed)
    packed = packing.padding_fraction(lengths, batch_size=b, buckets=(32, 64, 128), seed=s.seed)
    fixed = batching.padding_fraction(lengths, batch_size=b, buckets=(128,), seed=s.seed)
    perm = np.random.default_rng(s.seed).permutation(len(lengths))
    real = total = 0
    for i in range(0, len(perm), b):
        rows = lengths[perm[i : i + b]]
        real += int(rows.sum())
        total += int(rows.max()) * len(rows)
    return {
        "examples": len(lengths),
        "batch_size": b,
        "mean_tokens": float(lengths.mean()),
        "max_tokens": int(lengths.max()),
        "pad_fraction_packed_32_64_128": packed,
        "pad_fraction_buckets_32_64_128": bucketed,
        "pad_fraction_fixed_128": fixed,
        "pad_fraction_batch_max_shuffled": 1.0 - real / total,
        "token_slots_ratio_buckets_vs_fixed": (1 - fixed) / (1 - bucketed),
        "token_slots_ratio_packed_vs_buckets": (1 - bucketed) / (1 - packed),
    }


# The compile case's two configs: the smoke test, and the default config's program shapes (batch
# 32 rows of up to 128 tokens, its buckets) with its steps and data cut so that compiling, not
# training, is what the run does — the programs a user's real run of that config compiles.
COMPILE_CONFIGS = {
    "tiny": ["--config=configs/multitask.py:tiny"],
    "default shapes": ["--config=configs/multitask.py", "--config.train.steps=2",
                       "--config.train.eval_every=0", "--config.data.max_train_examples=64",
                       "--config.data.max_eval_examples=32", "--config.checkpoint.every_steps=0"],
}  # fmt: skip


def case_compile(s: Settings) -> dict[str, Any]:
    """The persistent compilation cache: for each of ``COMPILE_CONFIGS``, the same ``launch.py``
    command twice, the first with an empty cache folder, each a fresh process. Compile seconds,
    hits and misses are the run's own ``compilations`` event in ``metrics.jsonl`` (JAX's
    monitoring events; on a hit the seconds are loading the cached executable, not compiling
    it)."""
    configs = []
    for name, config_args in COMPILE_CONFIGS.items():
        configs.append({"name": name, **_compile_twice(s, config_args)})
    return {"configs": configs, "load_avg": os.getloadavg()}


def _compile_twice(s: Settings, config_args: list[str]) -> dict[str, Any]:
    folder = tempfile.mkdtemp(prefix="jaxtl-bench-compile-")
    cache = os.path.join(folder, "xla")
    # Run from the repository, so the command reads as a user types it; "<cache>" in the shown
    # command stands for the fresh folder.
    args = ["--regime=multitask", *config_args, "--config.compile_cache=<cache>",
            "--config.train.progress=False"]  # fmt: skip
    if s.model != "minilm":
        args.append(f"--config.model.name={model_dir(s.model)}")
    cmd = [sys.executable, "launch.py", *(a.replace("<cache>", cache) for a in args)]
    runs = []
    try:
        for i in (1, 2):
            workdir = os.path.join(folder, f"run{i}")
            t0 = time.perf_counter()
            p = subprocess.run([*cmd, f"--workdir={workdir}"], cwd=REPO, capture_output=True,
                               text=True)  # fmt: skip
            wall = time.perf_counter() - t0
            if p.returncode != 0:
                raise RuntimeError(f"compile case, run {i}: {p.stderr.strip()[-2000:]}")
            with open(os.path.join(workdir, "metrics.jsonl")) as f:
                event = [r for r in map(json.loads, f) if r.get("task") == "compilations"][-1]
            files = [os.path.join(cache, n) for n in os.listdir(cache)]
            runs.append({
                "run": i, "wall_s": wall, "compile_seconds": event["compile_seconds"],
                "cache_hits": event["cache_hits"], "cache_misses": event["cache_misses"],
                "train_programs": event["train"], "eval_programs": event["eval"],
                "cache_files": len(files), "cache_bytes": sum(map(os.path.getsize, files)),
            })  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    first, second = runs
    return {
        "command": " ".join(["launch.py", *args, "--workdir=<run>"]),
        "runs": runs,
        "compile_ratio": first["compile_seconds"] / max(second["compile_seconds"], 1e-9),
        "wall_ratio": first["wall_s"] / second["wall_s"],
    }


CHECKPOINT_BASE = {"jaxtl": "jaxtl, no periodic checkpoint", "trainer": "HF Trainer, no checkpoint"}
BEST_BASE = "jaxtl, evaluating, no best params (train.save_best=False)"


def case_checkpoint(s: Settings) -> dict[str, Any]:
    """What saving costs a training run: the e2e recipe on the first ``s.train_examples`` of
    SST-2 (one epoch), each run a fresh process, in ``s.checkpoint_pairs`` alternated rounds.

    Checkpoints: every ``s.checkpoint_every`` steps and none — jaxtl writing in the background
    (its default, ``checkpoint.async_save``) and in the loop, the HF Trainer (``save_steps``:
    model, optimizer, scheduler and RNG states). Best params: jaxtl evaluating every
    ``s.checkpoint_every`` steps with ``train.save_best`` (each evaluation that improves writes
    ``best/``) and without, in the loop (its default) and in the background
    (``checkpoint.async_best``). A cost is the median wall time with saves minus its baseline's,
    per save. jaxtl's runs share one compile cache, filled by an untimed run first, so compiling
    is out of the comparison; each jaxtl run also checkpoints at its end (the loop always
    does)."""
    task, train, dev = _sst2(s)
    steps = math.ceil(len(train) / s.batch_size)
    every = s.checkpoint_every or 8
    ck = {"eval_every": 0, "save_best": False}
    modes: dict[str, tuple[str, dict[str, Any]]] = {
        CHECKPOINT_BASE["jaxtl"]: ("jaxtl", ck | {"checkpoint_every": 0, "checkpoint_async": True}),
        "jaxtl, in the background (default)":
            ("jaxtl", ck | {"checkpoint_every": every, "checkpoint_async": True}),
        "jaxtl, in the loop (checkpoint.async_save=False)":
            ("jaxtl", ck | {"checkpoint_every": every, "checkpoint_async": False}),
    }  # fmt: skip
    if s.torch:
        modes[CHECKPOINT_BASE["trainer"]] = ("trainer", {"checkpoint_every": 0})
        modes["HF Trainer, save_steps"] = ("trainer", {"checkpoint_every": every})
    ev = {"eval_every": every, "checkpoint_every": 0, "checkpoint_async": True}
    modes[BEST_BASE] = ("jaxtl", ev | {"save_best": False})
    modes["jaxtl, best params in the loop (default)"] = ("jaxtl", ev | {"save_best": True})
    modes["jaxtl, best params in the background (checkpoint.async_best=True)"] = (
        "jaxtl", ev | {"save_best": True, "best_async": True},
    )  # fmt: skip
    folder = tempfile.mkdtemp(prefix="jaxtl-bench-checkpoint-")
    cache = os.path.join(folder, "xla")
    walls: dict[str, list[float]] = {m: [] for m in modes}
    peaks: dict[str, list[float]] = {m: [] for m in modes}
    runs: dict[str, dict[str, Any]] = {}

    def one(system: str, overrides: dict[str, Any]) -> dict[str, Any]:
        r = dataclasses.replace(s, **overrides)
        if system == "trainer":
            return _e2e_trainer(r, steps, train, dev)
        job = ["e2e", str(steps), str(len(train)), str(len(dev)), cache, json.dumps(r.to_json())]
        return _worker(job, _device_env(1))

    try:
        one("jaxtl", modes[CHECKPOINT_BASE["jaxtl"]][1])  # fills the compile cache, untimed
        for _ in range(s.checkpoint_pairs):
            for mode, (system, overrides) in modes.items():
                runs[mode] = one(system, overrides)
                walls[mode].append(runs[mode]["wall_s"])
                peaks[mode].append(runs[mode].get("peak_rss_mib", 0.0))
                print(f"  checkpoint {mode}: {walls[mode][-1]:.1f}s", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    jaxtl_steps = runs[CHECKPOINT_BASE["jaxtl"]]["steps"]
    rows = []
    for mode, (system, o) in modes.items():
        if o.get("eval_every"):
            kind, base = "best params", BEST_BASE
            saves = runs[mode]["best_saves"]
        else:
            kind, base = "checkpoint", CHECKPOINT_BASE[system]
            n = o["checkpoint_every"]
            saves = (jaxtl_steps if system == "jaxtl" else steps) // n if n else 0
        cost = median(walls[mode]) - median(walls[base])
        rows.append({
            "mode": mode, "system": system, "saving": kind,
            "every": o.get("eval_every") or o["checkpoint_every"],
            "background": o.get("best_async", False) if o.get("eval_every")
            else o.get("checkpoint_async", True), "saves": saves,
            "evaluations": runs[mode].get("evaluations"),
            "wall_s": walls[mode], "wall_median_s": median(walls[mode]),
            "accuracy": runs[mode]["accuracy"], "checkpoint_cost_s": cost,
            "checkpoints_kept": runs[mode]["checkpoints_kept"],
            # a worker's own peak, median over rounds (jaxtl; the Trainer runs in this process,
            # whose peak is the whole case's)
            "peak_rss_mib": median(peaks[mode]) if system == "jaxtl" else None,
            "cost_per_save_s": cost / saves if saves else None,
        })  # fmt: skip
    return {
        "train_examples": len(train), "trainer_steps": steps, "jaxtl_steps": jaxtl_steps,
        "every": every, "dev_examples": len(dev), "rows": rows, "load_avg": os.getloadavg(),
    }  # fmt: skip


def case_mlm(s: Settings) -> dict[str, Any]:
    """Masked-LM train step, B x T (the longest ``--seq-lens``), 15% of positions masked: jaxtl
    decoding only the masked positions (what a run does), jaxtl decoding every position, and
    transformers' BertForMaskedLM (decodes every position), alternated. Both jaxtl variants
    start from the same parameters and dropout key, so their first losses must agree."""
    from bench import jaxtl_side as J
    from bench import torch_side as T
    from jaxtl.models import hf

    t, prob = max(s.seq_lens), 0.15
    mask_id = hf.load_tokenizer(model_dir(s.model)).mask_token_id
    batch = J.mlm_batch(_vocab(s), s.batch_size, t, s.seed, mask_id=mask_id, prob=prob)
    sparse = J.mlm_setup(s, batch, label_fraction=prob)
    dense = J.mlm_setup(s, batch, label_fraction=1.0)
    loss_sparse, loss_dense = sparse.loss(), dense.loss()  # also the warm-up step
    tx = T.mlm_setup(s, batch)
    for _ in range(s.warmup):
        tx.run()
    # alternate()'s third system is named "keras" in its keys: here it is jaxtl decoding all.
    timing = alternate(sparse.run, tx.run, s.pairs, dense.run)
    row = {
        "batch_size": s.batch_size, "seq_len": t, "masked": int((batch["token_labels"] >= 0).sum()),
        "vocab_size": _vocab(s), "loss_masked_only": loss_sparse,
        "loss_every_position": loss_dense,
        "jaxtl_s": timing["jaxtl_s"], "jaxtl_median_s": timing["jaxtl_median_s"],
        "torch_s": timing["torch_s"], "torch_median_s": timing["torch_median_s"],
        "ratio_median": timing["ratio_median"],
        "jaxtl_every_position_s": timing["keras_s"],
        "jaxtl_every_position_median_s": timing["keras_median_s"],
        "ratio_vs_every_position_median": timing["ratio_keras_median"],
        "load_avg": os.getloadavg(),
    }  # fmt: skip
    print(f"  mlm B={s.batch_size} T={t}: jaxtl {row['jaxtl_median_s']:.3f}s, every position "
          f"{row['jaxtl_every_position_median_s']:.3f}s, torch {row['torch_median_s']:.3f}s "
          f"(ratio {row['ratio_median']:.2f})", flush=True)  # fmt: skip
    return row


def case_embed(s: Settings) -> dict[str, Any]:
    """Sentence embeddings (``jaxtl --embed``'s :class:`jaxtl.embed.Embedder`) against
    sentence-transformers' ``SentenceTransformer.encode`` (PyTorch) on the same folder (the
    packaged all-MiniLM-L6-v2: mean pooling, normalised, 256 tokens), the first
    ``s.embed_examples`` SST-2 training sentences, batch 64 each (jaxtl's batch counts packed
    rows of up to 256 tokens). One untimed pass each first (jaxtl's compiles), then whole passes
    alternated; the vectors of the two must agree."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from jaxtl import embed

    _, train, _ = _sst2(dataclasses.replace(s, train_examples=s.embed_examples))
    texts = [ex.text for ex in train]
    e = embed.embedder(s.model)
    st = SentenceTransformer(str(model_dir(s.model)), device="cpu")
    t0 = time.perf_counter()
    ours = e.embed(texts)
    first = time.perf_counter() - t0
    ref = st.encode(texts, batch_size=64)
    timing = alternate(lambda: e.embed(texts), lambda: st.encode(texts, batch_size=64), s.pairs)
    row = {
        "sentences": len(texts), "model": s.model, "settings": e.describe(),
        "jaxtl_first_pass_s": first,
        "max_abs_diff": float(np.abs(ours - ref).max()), **timing, "load_avg": os.getloadavg(),
    }  # fmt: skip
    print(f"  embed {len(texts)} sentences: jaxtl {row['jaxtl_median_s']:.2f}s, "
          f"sentence-transformers {row['torch_median_s']:.2f}s (ratio {row['ratio_median']:.2f}); "
          f"max |diff| {row['max_abs_diff']:.1e}", flush=True)  # fmt: skip
    return row


def case_e2e_full(s: Settings) -> dict[str, Any]:
    """``e2e`` on all of SST-2 train (67,349 examples), one epoch, every system (``--full-epoch``).

    A case of its own, outside the default run, so that its table sits beside the quick one
    instead of replacing it."""
    return case_e2e(dataclasses.replace(s, train_examples=0))


def case_families(s: Settings) -> dict[str, Any]:
    from bench.families import SHAPE
    from bench.families import case_families as run

    return run(s, shape={**SHAPE, "layers": s.families_layers}, only=tuple(s.families_only))


CASES = ("step", "forward", "e2e", "cache", "memory", "scaling", "accelerator", "padding",
         "families", "compile", "mlm", "checkpoint", "embed")  # fmt: skip

__all__ = ["CASES", "median"]
