"""The benchmark cases. Each ``case_<name>(s: Settings) -> dict`` returns JSON-able results.

Cases that need a fresh process (peak RSS, a different fake-device count) run
``python -m bench.worker`` per configuration and collect the JSON line it prints.
"""

from __future__ import annotations

import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from bench.common import HEAD_KEY, REPO, TASK, Settings, alternate, median, model_dir

STEP_STRATEGIES = ("full", "frozen", "bottom_half", "lora")


def _vocab(s: Settings) -> int:
    return int(json.loads((model_dir(s.model) / "config.json").read_text())["vocab_size"])


# ------------------------------------------------------------------------------ 1. step time
def case_step(s: Settings) -> dict[str, Any]:
    """Train-step time per strategy and length, jaxtl vs PyTorch alternated, plus XLA FLOPs."""
    from bench import jaxtl_side as J
    from bench import torch_side as T

    rows = []
    for t in s.seq_lens:
        batch = J.random_batch(_vocab(s), s.batch_size, t, s.seed)
        for strategy in STEP_STRATEGIES:
            model, _ = J.build_model(s, strategy, tokenizer=False)
            params = J.params_of(model)
            jx = J.train_setup(s, strategy, batch, model=model)
            tx = T.train_setup(s, strategy, params, batch)
            for _ in range(s.warmup):
                jx.run()
                tx.run()
            timing = alternate(jx.run, tx.run, s.pairs)
            row = {
                "seq_len": t,
                "batch_size": s.batch_size,
                "strategy": strategy,
                "jaxtl_compile_s": jx.compile_s,
                "jaxtl_flops": jx.flops,
                "jaxtl_trainable_params": jx.trainable_params,
                "torch_trainable_params": tx.trainable_params,
                "jaxtl_opt_state_bytes": jx.opt_state_bytes,
                "torch_opt_state_bytes": T.optimizer_state_bytes(tx.opt),
                **timing,
            }
            rows.append(row)
            print(f"  step T={t} {strategy}: jaxtl {row['jaxtl_median_s']:.3f}s "
                  f"torch {row['torch_median_s']:.3f}s ratio {row['ratio_median']:.2f}",
                  flush=True)  # fmt: skip
            del jx, tx, model
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
    """SST-2: jaxtl's multitask regime (one task, buckets 32/64/128) vs HF Trainer."""
    task, train, dev = _sst2(s)
    steps = math.ceil(len(train) / s.batch_size)
    out: dict[str, Any] = {
        "train_examples": len(train),
        "dev_examples": len(dev),
        "steps": steps,
        "batch_size": s.batch_size,
        "lr": s.lr,
    }
    out["jaxtl"] = _e2e_jaxtl(s, steps, len(train), len(dev))
    print(f"  e2e jaxtl: {out['jaxtl']['wall_s']:.1f}s acc {out['jaxtl']['accuracy']:.4f}",
          flush=True)  # fmt: skip
    gc.collect()
    out["torch"] = _e2e_trainer(s, steps, train, dev)
    print(f"  e2e trainer: {out['torch']['wall_s']:.1f}s acc {out['torch']['accuracy']:.4f}",
          flush=True)  # fmt: skip
    out["ratio"] = out["jaxtl"]["wall_s"] / out["torch"]["wall_s"]
    out["accuracy_gap_points"] = 100 * abs(out["jaxtl"]["accuracy"] - out["torch"]["accuracy"])
    out["ratio_counts"] = out["accuracy_gap_points"] <= 0.5
    return out


def _e2e_jaxtl(s: Settings, steps: int, n_train: int, n_dev: int) -> dict[str, Any]:
    from jaxtl import assembly
    from jaxtl import config as config_lib
    from jaxtl.data import batching, packing
    from jaxtl.data.prepare import prepare_tasks
    from jaxtl.regimes import multitask

    c = config_lib.base_config()
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
    c.optim.lr = s.lr
    config_lib.finalize(c)
    # The same recipe as the Trainer's, one epoch: packed rows (data.packing, on for MiniLM)
    # hold several examples each, so an epoch is fewer steps of batch_size rows.
    pre = assembly.load_encoder(c)
    packed = assembly.packing(c, pre.model)
    td = prepare_tasks((TASK,), c, pre.tokenizer, with_eval=False, packed=packed)[0]
    if packed:
        c.train.steps = c.train.log_every = steps = td.train_iter.batches_per_epoch()
    lengths, name = td.train_iter.encoded.lengths, td.task.name
    fraction = packing.padding_fraction if packed else batching.padding_fraction
    pad = fraction(
        lengths, batch_size=s.batch_size, buckets=tuple(c.data.buckets), seed=td.train_iter.seed
    )
    del pre, td
    gc.collect()
    with tempfile.TemporaryDirectory() as wd:
        t0 = time.perf_counter()
        res = multitask.run(c, wd)
        wall = time.perf_counter() - t0
        with open(os.path.join(wd, "metrics.jsonl")) as f:
            events = [json.loads(x) for x in f]
    train_events = [e for e in events if e.get("split") == "train"]
    return {
        "wall_s": wall,
        "accuracy": float(res["joint"][name]["accuracy"]),
        "packed": packed,
        "steps": steps,
        "pad_fraction": pad,
        "buckets": list(c.data.buckets),
        "last_train_log": train_events[-1] if train_events else None,
        "what": "jaxtl.regimes.multitask.run, tasks=(glue/sst2,), eval at the end only",
    }


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
            save_strategy="no",
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
    wall = time.perf_counter() - t0
    acc = float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())
    return {
        "wall_s": wall,
        "train_runtime_s": float(tr.metrics.get("train_runtime", float("nan"))),
        "accuracy": acc,
        "pad_fraction": 1.0 - counts["real"] / max(1, counts["total"]),
        "optimizer": str(args.optim),
        "torch_threads": torch.get_num_threads(),
        "what": "transformers.Trainer + DataCollatorWithPadding (batch-max padding)",
    }


# ------------------------------------------------------------------------------ 4. feature cache
def case_cache(s: Settings) -> dict[str, Any]:
    """Head training for N epochs: cached frozen features vs recomputing the frozen encoder."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from bench import jaxtl_side as J
    from jaxtl import losses, models
    from jaxtl import step as step_lib
    from jaxtl.data import batching, tokenize

    task, train, _ = _sst2(s)
    train = train[: s.cache_examples]
    model, pre = J.build_model(s, "frozen")
    enc = tokenize.encode(task, train, pre.tokenizer, max_length=128)
    it = batching.TrainBatches(enc, batch_size=s.batch_size, seed=s.seed)
    steps = s.cache_epochs * it.batches_per_epoch()
    batches = [next(it) for _ in range(steps)]

    # Recompute: jaxtl's feature-extraction step over bucketed batches; one compiled program per
    # bucket, compiled before timing.
    def recompute() -> dict[str, Any]:
        m, _ = J.build_model(s, "frozen", tokenizer=False)
        setups, compile_s = {}, 0.0
        state = None
        for b in batches:
            t = b["input_ids"].shape[1]
            if t not in setups:
                st = J.train_setup(s, "frozen", b, model=m, total_steps=steps)
                setups[t] = st
                compile_s += st.compile_s
                state = st.state if state is None else state
        t0 = time.perf_counter()
        for b in batches:
            state, met = setups[b["input_ids"].shape[1]].step(state, jax.device_put(b))
        jax.block_until_ready((state, met))
        return {"train_s": time.perf_counter() - t0, "compile_s": compile_s,
                "final_loss": float(met["loss"])}  # fmt: skip

    rec = recompute()
    gc.collect()

    # Cached: run the encoder once (jaxtl eval step), keep the [CLS] vectors.
    graphdef, pstate = nnx.split(model, nnx.Param)
    params = jax.device_put(nnx.to_pure_dict(pstate))
    feat_fn = step_lib.make_eval_step(
        graphdef, lambda mm, b: mm.features(b["input_ids"], b["attention_mask"],
                                            b["token_type_ids"])[1][:, 0]
    )  # fmt: skip
    ev = batching.eval_batches(enc, batch_size=s.batch_size)
    order = batching.eval_order(enc)
    compiled, compile_s = {}, 0.0
    for b in ev:
        t = b["input_ids"].shape[1]
        if t not in compiled:
            t0 = time.perf_counter()
            compiled[t] = feat_fn.lower(params, jax.device_put(b)).compile()
            compile_s += time.perf_counter() - t0
    t0 = time.perf_counter()
    outs = [np.asarray(compiled[b["input_ids"].shape[1]](params, jax.device_put(b))) for b in ev]
    feats_sorted = np.concatenate(
        [o[b["example_weight"] > 0] for o, b in zip(outs, ev)], axis=0
    ).astype(np.float32)
    feats = np.empty_like(feats_sorted)
    feats[order] = feats_sorted
    extract_s = time.perf_counter() - t0

    class HeadOnly(nnx.Module):
        def __init__(self, head):
            self.heads = nnx.Dict({HEAD_KEY: head})

    head = models.ClassificationHead(feats.shape[1], 2, "cls", None, 0.1, rngs=nnx.Rngs(s.seed))
    hm = HeadOnly(head)

    def loss_fn(mm, b, rngs, train_mode):
        x = b["feats"][:, None, :]
        logits = mm.heads[HEAD_KEY](x, jnp.ones(x.shape[:2], jnp.int32),
                                    deterministic=not train_mode, rngs=rngs)  # fmt: skip
        total, den = losses.classification(logits, b)
        return total, {"denominator": den}

    sched = optax.linear_schedule(s.lr, 0.0, steps)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(sched, weight_decay=0.01))
    hg, hp = nnx.split(hm, nnx.Param)
    hstate = step_lib.init_state(nnx.to_pure_dict(hp), tx, s.seed)
    hstep = step_lib.make_train_step(hg, loss_fn, tx)
    rng = np.random.default_rng(s.seed)
    labels = enc.label

    def head_batches():
        n = len(labels)
        for _ in range(s.cache_epochs):
            perm = rng.permutation(n)
            for i in range(0, n - s.batch_size + 1, s.batch_size):
                rows = perm[i : i + s.batch_size]
                yield {"feats": feats[rows], "label": labels[rows],
                       "example_weight": np.ones(len(rows), np.float32)}  # fmt: skip

    hb = list(head_batches())
    t0 = time.perf_counter()
    hcompiled = hstep.lower(hstate, jax.device_put(hb[0])).compile()
    head_compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for b in hb:
        hstate, hm_ = hcompiled(hstate, b)
    jax.block_until_ready((hstate, hm_))
    cached_train_s = time.perf_counter() - t0
    return {
        "train_examples": len(enc),
        "epochs": s.cache_epochs,
        "recompute_steps": steps,
        "cached_steps": len(hb),
        "recompute_train_s": rec["train_s"],
        "recompute_compile_s": rec["compile_s"],
        "extract_s": extract_s,
        "extract_compile_s": compile_s,
        "cached_train_s": cached_train_s,
        "cached_compile_s": head_compile_s,
        "ratio_train_only": rec["train_s"] / cached_train_s,
        "ratio_including_extraction": rec["train_s"] / (cached_train_s + extract_s),
        "goal_ratio": 20.0,
        "cached_final_loss": float(hm_["loss"]),
        "recompute_final_loss": rec["final_loss"],
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
    """BERT-base (random init), T=128, bf16 compute: tokens/s and MFU on a GPU/TPU."""
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
    import jax.numpy as jnp
    from flax import nnx

    from bench import jaxtl_side as J
    from jaxtl import models

    enc = models.build_encoder("bert", BERT_BASE, rngs=nnx.Rngs(s.seed), dtype=jnp.bfloat16)
    head = models.ClassificationHead(768, 2, "cls", None, 0.1, rngs=nnx.Rngs(s.seed))
    model = models.TransferModel(enc, {HEAD_KEY: head})
    batch = J.random_batch(BERT_BASE["vocab_size"], s.batch_size, 128, s.seed)
    st = J.train_setup(s, "full", batch, model=model)
    for _ in range(max(1, s.warmup)):
        st.run()
    timing = alternate(st.run, None, max(5, s.pairs))
    dt = timing["jaxtl_median_s"]
    kind = jax.devices()[0].device_kind
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k.lower() in kind.lower()), None)
    achieved = st.flops / dt
    return {
        "available": True,
        "backend": backend,
        "device_kind": kind,
        "batch_size": s.batch_size,
        "seq_len": 128,
        "step_median_s": dt,
        "tokens_per_s": s.batch_size * 128 / dt,
        "flops_per_step": st.flops,
        "achieved_tflops": achieved / 1e12,
        "peak_bf16_tflops": peak,
        "mfu": achieved / (peak * 1e12) if peak else None,
        "compile_s": st.compile_s,
    }


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


CASES = ("step", "forward", "e2e", "cache", "memory", "scaling", "accelerator", "padding")

__all__ = ["CASES", "median"]
