"""Regenerate the tables of BENCHMARKS.md from a results JSON.

Each case owns the text between ``<!-- bench:NAME:start -->`` and ``<!-- bench:NAME:end -->``;
only the cases present in the results are rewritten, prose outside the markers is kept, and a
missing section is appended. Every number written here comes from the results file, which is
named under each table with the command that produced it.
"""

from __future__ import annotations

import pathlib
import re
import shlex
from collections.abc import Callable
from typing import Any

SECTIONS = ("meta", "step", "forward", "e2e", "e2e_full", "cache", "memory", "scaling", "accelerator",
            "padding", "compile", "families", "data_scale", "mlm", "checkpoint", "embed")  # fmt: skip
OWN_RUN = (
    "e2e_full",
    "families",
    "data_scale",
    "compile",
    "mlm",
    "checkpoint",
    "embed",
)  # sections not needed for a run to count as the full one

TITLES = {
    "meta": "Run",
    "families": "10. Every model family at one shape",
    "step": "1. Train-step time (MiniLM-L6)",
    "forward": "2. Jitted forward",
    "e2e": "3. End to end, SST-2",
    "e2e_full": "3b. End to end, SST-2: one epoch of all of train",
    "cache": "4. Feature caching",
    "memory": "5. Memory",
    "scaling": "6. Scaling shape (FSDP over fake CPU devices)",
    "accelerator": "7. GPU/TPU",
    "padding": "8. Padding waste",
    "compile": "9. Persistent compilation cache",
    "data_scale": "11. Data at scale: tokenise and batch",
    "mlm": "12. Masked-LM train step",
    "checkpoint": "13. Checkpointing during training",
    "embed": "14. Sentence embeddings",
}


def _f(x: Any, nd: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def _mib(b: float) -> str:
    return f"{b / 2**20:.1f}"


def _load_after(case: dict, what: str) -> str:
    """The bullet naming the load average a case recorded when it ended."""
    return f"- Load average after the {what}: {', '.join(f'{x:.2f}' for x in case['load_avg'])}."


def _table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _source(res: dict, path: pathlib.Path) -> str:
    """The command, its results file and when and where it ran (CPU model, load at the start:
    ratios differ between CPUs and with load)."""
    m = res.get("machine", {})
    where = ""
    if m.get("cpu_model"):
        isa = f", {m['cpu_isa']}" if m.get("cpu_isa") else ""
        where = f'; CPU "{m["cpu_model"]}"{isa}, {m.get("nproc", "?")} cores'
        load = m.get("load_average_at_start")
        if load:
            where += f", load {load[0]:.2f} at the start"
    return f"Command: `{_env_prefix(m)}{res['command']}` — results: `{_rel(path)}` ({res['date']}{where})."


def _env_prefix(machine: dict) -> str:
    """``NAME=value `` for each timing-relevant variable the run had (``bench.common.timing_env``),
    so the command as printed reproduces it."""
    return "".join(f"{k}={shlex.quote(v)} " for k, v in machine.get("env", {}).items())


def _rel(path: pathlib.Path) -> str:
    try:
        return str(path.resolve().relative_to(pathlib.Path(__file__).resolve().parents[1]))
    except ValueError:
        return str(path)


def meta(res: dict, path: pathlib.Path) -> str:
    m = res["machine"]
    v = ", ".join(f"{k} {x}" for k, x in m["versions"].items())
    load = m.get("load_average_at_start")
    return "\n".join([
        f"- Command: `{_env_prefix(m)}{res['command']}`",
        f"- Date (UTC): {res['date']}; total wall time {res['total_wall_s']:.0f} s",
        f"- Machine: `nproc` = {m['nproc']}, CPU: {m['cpu_model']}, {m.get('cpu_isa', 'ISA not recorded')}, {m['platform']}",
        f"- Load average at start (1/5/15 min): {load}; torch threads = {m['torch_threads'] or 'no torch'}",
        f"- Versions: Python {m['python']}, {v}",
        f"- Results file: `{_rel(path)}`",
    ])  # fmt: skip


def step(res: dict, path: pathlib.Path) -> str:
    c = res["cases"]["step"]
    rows = []
    for r in c["rows"]:
        keras = (
            [_f(r["keras_median_s"]), _f(r["ratio_keras_median"], 2)]
            if "keras_s" in r
            else ["—", "—"]
        )
        rows.append([
            r["seq_len"], r["strategy"], _f(r["jaxtl_median_s"]), _f(r["torch_median_s"]),
            _f(r["ratio_median"], 2), *keras, _f(r["jaxtl_flops"] / 1e9, 1),
            _f(r["jaxtl_compile_s"], 1), r.get("jaxtl_cpu_kernels", "not recorded"),
            f"{r['jaxtl_trainable_params']:,}",
        ])  # fmt: skip
    header = ["T", "strategy", "jaxtl s", "PyTorch s", "jaxtl/PyTorch", "KerasHub s",
              "jaxtl/KerasHub", "jaxtl GFLOP (XLA)", "jaxtl compile s", "jaxtl CPU kernels",
              "trainable params"]  # fmt: skip
    lines = [
        f"B = {c['rows'][0]['batch_size']}, medians of {len(c['rows'][0]['jaxtl_s'])} "
        "alternated rounds (jaxtl, PyTorch, KerasHub in each round; KerasHub's BERT uses the "
        "tanh GELU and its pooled output, see bench/keras_side.py) after warm-up; jaxtl's step is built "
        "as the Trainer builds it (the phase's trainable mask: frozen parameters enter as "
        "constants). jaxtl CPU kernels: read from the compiled step, `ynnpack` where it holds "
        "YNNPACK library fusions, else `xla` (`cpu_kernels=auto` picks per shape).",
        "",
        _table(header, rows),
        "",
    ]
    for t, d in c["derived"].items():
        fr = d.get("frozen")
        if fr:
            goal = d["frozen_goal_ratio"]
            lines.append(
                f"- T={t}, feature extraction / full step time: jaxtl {_f(fr['jaxtl_time_ratio'], 2)}"
                f" (XLA FLOPs ratio {_f(fr['jaxtl_flops_ratio'], 2)}), PyTorch "
                f"{_f(fr['torch_time_ratio'], 2)}. Goal ≤ {goal}: "
                + _verdict(fr["jaxtl_time_ratio"], goal, lower=True)
                + "."
            )
        bh = d.get("bottom_half")
        if bh:
            pred = d["bottom_half_predicted_saving"]
            lines.append(
                f"- T={t}, bottom half frozen: saving 1 − t/t_full = jaxtl "
                f"{_f(1 - bh['jaxtl_time_ratio'], 2)} (FLOPs {_f(1 - bh['jaxtl_flops_ratio'], 2)}),"
                f" PyTorch {_f(1 - bh['torch_time_ratio'], 2)}; model (2/3)(k/L) = {pred:.2f}."
            )
    lines += ["", _source(res, path)]
    return "\n".join(lines)


def _verdict(x: float | None, goal: float, *, lower: bool) -> str:
    if x is None:
        return "not measured"
    ok = x <= goal if lower else x >= goal
    if ok:
        return f"met ({x:.2f})"
    return f"missed by {abs(x - goal):.2f} ({x:.2f} vs {goal})"


def forward(res: dict, path: pathlib.Path) -> str:
    c = res["cases"]["forward"]
    rows = [
        [
            c["batch_size"],
            c["seq_len"],
            _f(c["jaxtl_median_s"]),
            _f(c["torch_median_s"]),
            _f(c["ratio_median"], 2),
            _f(c["jaxtl_flops"] / 1e9, 1),
            _f(c["jaxtl_compile_s"], 1),
        ]
    ]
    header = ["B", "T", "jaxtl s", "PyTorch (inference_mode) s", "jaxtl/PyTorch",
              "jaxtl GFLOP", "compile s"]  # fmt: skip
    return "\n".join([
        f"Medians of {len(c['jaxtl_s'])} alternated pairs; jaxtl = `jaxtl.step.make_eval_step` "
        "returning the last hidden state, PyTorch = `AutoModel` under `torch.inference_mode()`.",
        "", _table(header, rows), "", _source(res, path),
    ])  # fmt: skip


def _recipe(c: dict, name: str, optimizer: str | None) -> str:
    """The e2e table's opening sentence: the data and the recipe every system trains with."""
    return (
        f"{c['train_examples']} training examples "
        f"({'all of SST-2 train, one epoch' if name == 'e2e_full' else 'the first ones of SST-2 train'}), "
        f"{c['dev_examples']} dev examples, {c['steps']} steps of batch {c['batch_size']}, "
        f"LR {c['lr']} linear with 10% warm-up, AdamW (wd 0.01), clip 1.0, for every system. Wall time "
        "from model load and tokenisation to dev accuracy, compilation included"
        + (f"; HF's optimizer: `{optimizer}`." if optimizer else ".")
    )  # fmt: skip


def _packing(jaxtl_runs: list[dict]) -> str:
    """The sentence saying how jaxtl's packed rows make up a step, when its runs were packed:
    once when every seed packed alike (packing does not depend on the seed), else per run."""
    said = [
        f"{j['row_batch_size']} rows per step (≈ {j['examples_per_step']:.1f} examples, the "
        f"others' batch), {j['steps']} steps"
        for j in jaxtl_runs
        if "row_batch_size" in j
    ]
    if not said:
        return ""
    return f" jaxtl packs several examples per row: {'; '.join(dict.fromkeys(said))}."


def _compiled(r: dict) -> str:
    """A jaxtl e2e run's compile seconds and cache hits / misses."""
    if "compile_seconds" not in r:  # results from before the cold/warm split
        return "–"
    return f"{_f(r['compile_seconds'], 1)} ({r['cache_hits']} / {r['cache_misses']})"


# jaxtl's e2e peers: the name in a results file -> (the name in a table, the suffix of its
# keys in seed_summary's output, the possessive a goal line uses).
_PEERS = {
    "torch": ("Trainer", "", "the Trainer's"),
    "keras": ("KerasHub", "_keras", "KerasHub's"),
}


def _e2e_goal(c: dict, name: str) -> list[str]:
    """The goal line of an e2e case (``bench.common.E2E_GOALS``): each peer's wall-time ratio
    against the goal, on the means when the run has several seeds; for the full epoch a ratio
    meets it only while the dev accuracies are equal (±0.5)."""
    from bench.common import ACCURACY_RULE_POINTS, E2E_GOALS

    goal = E2E_GOALS.get(name)
    if goal is None:
        return []
    parts, met = [], []
    for peer in goal["peers"]:
        other, suffix, _ = _PEERS[peer]
        ratio = c.get(f"ratio{suffix}")
        if ratio is None:
            parts.append(f"{other} not run")
            met.append(False)
            continue
        on_time = ratio <= goal["ratio"]
        equal = c[f"ratio{suffix}_counts"] or not goal["equal_accuracy"]
        if on_time and not equal:
            state = f"{ratio:.2f}, but the accuracies differ by more than {ACCURACY_RULE_POINTS}"
        else:
            state = _verdict(ratio, goal["ratio"], lower=True)
        parts.append(f"{other} {state}")
        met.append(on_time and equal)
    whom = " and ".join(f"≤ {goal['ratio']}× {_PEERS[p][2]}" for p in goal["peers"])
    condition = (
        f" at equal dev accuracy (±{ACCURACY_RULE_POINTS})"
        if goal["equal_accuracy"]
        else " (a time ratio only: this case's goal has no accuracy condition)"
    )
    means = " on the means over seeds" if "runs" in c else ""
    return [
        f"- Goal: jaxtl's wall time {whom}{condition}: {'met' if all(met) else 'not met'}"
        f"{means} ({'; '.join(parts)})."
    ]


def _e2e_seeds(res: dict, path: pathlib.Path, name: str) -> str:
    """The e2e table of a run over several seeds: a row per system and seed, then the means
    (taken here from the per-seed rows, as the run took them)."""
    from bench.common import seed_summary

    c = res["cases"][name]
    c = {**c, **seed_summary(c["runs"])}
    names = {"jaxtl": "jaxtl (multitask regime, packed rows)",
             "jaxtl_warm": "jaxtl, second run (compile cache warm)",
             "torch": "HF Trainer + DataCollatorWithPadding",
             "keras": "KerasHub BertTextClassifier.fit (fixed length)"}  # fmt: skip
    length = next((r["keras"]["sequence_length"] for r in c["runs"] if "keras" in r), None)
    if length is not None:
        names["keras"] = f"KerasHub BertTextClassifier.fit (fixed length {length})"
    rows, optimizer = [], None
    for system, label in names.items():
        for r in c["runs"]:
            if system not in r:
                continue
            x = r[system]
            optimizer = x.get("optimizer", optimizer)
            rows.append([label, r["seed"], _f(x["wall_s"], 1), _compiled(x),
                         _f(100 * x["accuracy"], 2), _f(x["pad_fraction"], 3)])  # fmt: skip
    n = len(c["runs"])
    lines = [f"- {names[system]}: wall {_f(m['wall_mean_s'], 1)} ± {_f(m['wall_std_s'], 1)} s, "
             f"dev accuracy {_f(100 * m['accuracy_mean'], 2)} ± {_f(100 * m['accuracy_std'], 2)} "
             f"% (mean ± std over {n} seeds)."
             for system, m in c["summary"].items()]  # fmt: skip
    for other, suffix, _ in _PEERS.values():
        if f"ratio{suffix}" not in c:
            continue
        verdict = ("counts" if c[f"ratio{suffix}_counts"]
                   else "does NOT count (mean accuracies differ by more than 0.5)")  # fmt: skip
        each = ", ".join(_f(x, 2) for x in c[f"ratio{suffix}_each"])
        lines.append(f"- Ratio jaxtl/{other} of mean wall times: {_f(c[f'ratio{suffix}'], 2)} "
                     f"(per seed {each}); mean dev accuracy jaxtl − {other} "
                     f"{c[f'accuracy_diff{suffix}_points']:+.2f} points, so by the ±0.5 rule "
                     f"the ratio {verdict}.")  # fmt: skip
    if "ratio_warm" in c:
        each = ", ".join(_f(x, 2) for x in c["ratio_warm_each"])
        lines.append(f"- Ratio jaxtl/Trainer, jaxtl's second run (compile cache warm): "
                     f"{_f(c['ratio_warm'], 2)} (per seed {each}).")  # fmt: skip
    warm = (" jaxtl runs twice a seed, each in a fresh process sharing that seed's new "
            "compile-cache folder: first with it empty, then after the other systems."
            if "jaxtl_warm" in c["summary"] else "")  # fmt: skip
    return "\n".join([
        _recipe(c, name, optimizer)
        + _packing([r["jaxtl"] for r in c["runs"] if "jaxtl" in r])
        + f" Every system once per seed ({', '.join(map(str, c['seeds']))}), "
        "seed by seed, the systems in turn; each seed's jaxtl run starts with an empty compile "
        "cache." + warm,
        "",
        _table(["system", "seed", "wall s", "XLA compile s (cache hits / misses)", "dev acc %",
                "pad-token fraction (train)"], rows),
        "", *lines, *_e2e_goal(c, name), "", _source(res, path),
    ])  # fmt: skip


def e2e(res: dict, path: pathlib.Path, name: str = "e2e") -> str:
    c = res["cases"][name]
    if "runs" in c:
        return _e2e_seeds(res, path, name)
    j, t, w = c["jaxtl"], c.get("torch"), c.get("jaxtl_warm")

    kind = "packed rows" if j.get("packed") else "buckets 32/64/128"
    rows = [
        [f"jaxtl (multitask regime, {kind}){', compile cache empty' if w else ''}",
         _f(j["wall_s"], 1), _compiled(j), _f(100 * j["accuracy"], 2), _f(j["pad_fraction"], 3)],
    ]  # fmt: skip
    if w is not None:
        rows.append([f"jaxtl (multitask regime, {kind}), second run: compile cache warm",
                     _f(w["wall_s"], 1), _compiled(w), _f(100 * w["accuracy"], 2),
                     _f(w["pad_fraction"], 3)])  # fmt: skip
    if t is not None:
        rows.append(["HF Trainer + DataCollatorWithPadding", _f(t["wall_s"], 1), "–",
                     _f(100 * t["accuracy"], 2), _f(t["pad_fraction"], 3)])  # fmt: skip
    k = c.get("keras")
    if k is not None:
        rows.append([f"KerasHub BertTextClassifier.fit (fixed length {k['sequence_length']})",
                     _f(k["wall_s"], 1), "–", _f(100 * k["accuracy"], 2),
                     _f(k["pad_fraction"], 3)])  # fmt: skip
    lines = []
    if t is not None:
        counts = (
            "counts" if c["ratio_counts"] else "does NOT count (accuracies differ by more than 0.5)"
        )
        lines.append(f"- Ratio jaxtl/Trainer wall time{' (compile cache empty)' if w else ''}: "
                     f"{_f(c['ratio'], 2)}; accuracy gap {_f(c['accuracy_gap_points'], 2)} points, "
                     f"so the ratio {counts}.")  # fmt: skip
        if w is not None:
            lines.append("- Ratio jaxtl/Trainer wall time, second run (compile cache warm): "
                         f"{_f(c['ratio_warm'], 2)}.")  # fmt: skip
    if k is not None:
        kc = "counts" if c["ratio_keras_counts"] else "does NOT count (accuracies differ by >0.5)"
        lines.append(f"- Ratio jaxtl/KerasHub wall time: {_f(c['ratio_keras'], 2)}; accuracy gap "
                     f"{_f(c['accuracy_gap_keras_points'], 2)} points, so the ratio {kc}.")  # fmt: skip
    if t is not None:
        lines.append(f"- Trainer's own `train_runtime`: {_f(t['train_runtime_s'], 1)} s.")
    if "seed" in c:
        lines.append(
            f"- Seed {c['seed']} (jaxtl's head and data order, the Trainer's and KerasHub's seeds)."
        )
    return "\n".join([
        _recipe(c, name, t["optimizer"] if t is not None else None)
        + _packing([j])
        + (" jaxtl runs twice, each in a fresh process sharing one new compile-cache folder: "
           "first with it empty (a config's first run on a machine), then after the other "
           "systems (the same config again: its programs load from the cache)." if w else ""),
        "",
        _table(["system", "wall s", "XLA compile s (cache hits / misses)", "dev acc %",
                "pad-token fraction (train)"], rows),
        "",
        *lines,
        *_e2e_goal(c, name),
        "", _source(res, path),
    ])  # fmt: skip


def cache(res: dict, path: pathlib.Path) -> str:
    c = res["cases"]["cache"]
    rows = [
        [f"features.cache={m}", _f(c[m]["wall_s"], 1), _f(c[m]["compile_s"], 1),
         _f(c[m]["extract_s"], 1) if m == "memory" else "–", _f(c[m]["accuracy"], 4),
         _f(c[m]["final_loss"], 4)]
        for m in ("memory", "off")
    ]  # fmt: skip
    lines = [
        f"SST-2, {c['train_examples']} training examples, {c['epochs']} head epochs "
        f"({c['steps']} steps of batch {c['batch_size']}, {c['steps_per_epoch']} per epoch), "
        f"lr {c['lr']:g}; dev {c['dev_examples']} examples. `launch.py`'s path: the multitask "
        "regime with `optim.strategy=feature_extraction`, packed batches; the cached run includes "
        "its one encoder pass over train, dev and test; wall = config to the run's results (dev "
        "and test predictions included), in process; loss = the last step's.",
        "",
        _table(["path", "wall s", "compile s", "encoder pass s", "dev accuracy", "loss"], rows),
        "",
        f"- Recompute / cached wall time (median of {c.get('pairs', 1)} pair(s), order "
        f"alternating; each: {', '.join(_f(x, 2) for x in c.get('ratio_each', [c['ratio']]))}): "
        f"{_f(c['ratio'], 2)}× "
        f"(goal ≥ {c['goal_ratio']:.0f}× on all of SST-2 train: "
        f"{_verdict(c['ratio'], c['goal_ratio'], lower=False)}); without compile time "
        f"{_f(c['ratio_without_compile'], 2)}×.",
        f"- Dev accuracy gap: {_f(c['accuracy_gap_points'], 2)} points.",
    ]
    m = res["machine"]
    load = m.get("load_average_at_start") or []
    lines += ["", f"Machine: {m.get('cpu_model')}, {m.get('nproc')} cores, load average at start "
              f"{', '.join(_f(x, 2) for x in load[:3])}."]  # fmt: skip
    lines += ["", _source(res, path)]
    return "\n".join(lines)


def memory(res: dict, path: pathlib.Path) -> str:
    c = res["cases"]["memory"]

    def phase(r: dict, name: str) -> str:
        v = r.get("peak_rss_by_phase_mib", {}).get(name)
        return "—" if v is None else _f(v, 0)

    rows = [[r["strategy"], r["system"], f"{r['trainable_params']:,}", _mib(r["opt_state_bytes"]),
             phase(r, "imports"), phase(r, "model"), phase(r, "compile"),
             _mib(r["xla_temp_bytes"]) if "xla_temp_bytes" in r else "—",
             _f(r["peak_rss_mib"], 0)] for r in c["rows"]]  # fmt: skip
    return "\n".join([
        f"One process per row, B = {c['batch_size']}, T = {c['seq_len']}, "
        f"{c['rows'][0]['steps']} train step(s); peak RSS = `VmHWM` of /proc/self/status (the "
        "process's own high-water mark; `getrusage(RUSAGE_SELF).ru_maxrss`, also in the JSON, "
        "inherits the parent's peak across fork+exec on Linux, so it reads the same for every "
        "worker started by the benchmark process). The phase columns are the peak after "
        "imports, after building the model, and after compiling the step (jaxtl); `XLA temp` is "
        "the compiled step's temporary buffers (`memory_analysis().temp_size_in_bytes`: "
        "activations, gradients, intermediates), allocated on top of the donated state.",
        "",
        _table(["strategy", "system", "trainable params", "optimizer state MiB",
                "peak after imports", "after model", "after compile", "XLA temp MiB",
                "peak RSS MiB"], rows),
        "", _source(res, path),
    ])  # fmt: skip


def scaling(res: dict, path: pathlib.Path) -> str:
    c = res["cases"]["scaling"]
    rows = [[r["devices"], _f(r["step_median_s"]), _f(r["compile_s"], 1),
             _mib(r["per_device_param_bytes"]), _mib(r["per_device_opt_bytes"]),
             _mib(r["per_device_bytes"])] for r in c["rows"]]  # fmt: skip
    return "\n".join([
        f"Full fine-tune, mesh data=1 × fsdp=n, B = {c['batch_size']}, T = {c['seq_len']}; each "
        "row a process with `XLA_FLAGS=--xla_force_host_platform_device_count=n`. The fake "
        "devices share the same 2 cores, so step time shows the overhead of sharding, not a "
        "speed-up; the per-device bytes are what FSDP saves.",
        "",
        _table(["devices", "step s", "compile s", "params MiB/device", "opt state MiB/device",
                "total MiB/device"], rows),
        "", _source(res, path),
    ])  # fmt: skip


def accelerator(res: dict, path: pathlib.Path) -> str:
    c = res["cases"]["accelerator"]
    if not c.get("available"):
        return (
            f"Not measured: {c.get('reason')} (JAX backend `{c.get('backend')}`). "
            "`python bench/run.py --cases accelerator --accelerator` on a GPU/TPU machine "
            "fills this section with BERT-base (random init, T = 128, bf16 compute) tokens/s "
            "and MFU; no numbers are given until it runs there."
        )

    def gib(x: Any) -> str:
        return _f(x / 2**30, 1) if isinstance(x, (int, float)) else "n/a"  # None: a CPU peer

    rows = []
    for r in c["rows"]:
        for name, key in (("jaxtl", "jaxtl"), ("transformers + PyTorch", "torch")):
            if key not in r:
                continue
            x = r[key]
            rows.append([name, r["batch_size"], r["seq_len"], _f(x["step_median_s"] * 1e3, 1),
                         f"{x['tokens_per_s']:,.0f}", _f(x["achieved_tflops"], 1),
                         _f(x["mfu"], 3), gib(x.get("peak_bytes")),
                         _f(r["ratio_median"], 2) if key == "jaxtl" and "ratio_median" in r
                         else ""])  # fmt: skip
    peak = c["rows"][0]["peak_bf16_tflops"] if c["rows"] else None
    kernels = []  # jaxtl's top kernels per batch size, where the run traced them
    for r in c["rows"]:
        if r.get("jaxtl_kernels"):
            top = "; ".join(f"`{k['kind']}` {_f(k['ms_per_step'], 2)}" for k in r["jaxtl_kernels"])
            kernels += ["", f"jaxtl's top kernels at B = {r['batch_size']} (ms a step, from a "
                        f"trace of a few steps; a GPU's own kernels): {top}."]  # fmt: skip
    return "\n".join([
        f"Device: {c['device_kind']} (JAX backend `{c['backend']}`); BERT-base, random init, "
        f"full fine-tuning, bf16 compute over fp32 weights in both systems (jaxtl "
        f"`dtype=bfloat16`; PyTorch `torch.autocast(bfloat16)` as `Trainer(bf16=True)`), AdamW, "
        f"dropout 0.1. Each sample is {c['steps_per_sample']} steps back to back; medians of "
        f"alternated samples. MFU = model FLOPs (6 x weights x tokens + attention) / step time "
        f"/ the dense bf16 peak ({_f(peak, 0)} TFLOP/s, data sheet).",
        "",
        _table(["system", "B", "T", "step ms", "tokens/s", "TFLOP/s", "MFU", "peak GiB",
                "jaxtl/PyTorch"], rows),
        *kernels,
        "", _source(res, path),
    ])  # fmt: skip


def padding(res: dict, path: pathlib.Path) -> str:
    c = res["cases"]["padding"]
    rows = [
        ["packed, rows of 128 (jaxtl, data.packing=True)", _f(c["pad_fraction_packed_32_64_128"])],
        ["buckets 32/64/128 (jaxtl, data.packing=False)", _f(c["pad_fraction_buckets_32_64_128"])],
        ["fixed 128", _f(c["pad_fraction_fixed_128"])],
        ["batch-max, shuffled (DataCollatorWithPadding)", _f(c["pad_fraction_batch_max_shuffled"])],
    ]  # fmt: skip
    return "\n".join([
        f"{c['examples']:,} SST-2 training sentences (all of train unless --padding-examples), batch {c['batch_size']}; mean "
        f"{c['mean_tokens']:.1f} tokens, max {c['max_tokens']}.",
        "",
        _table(["padding", "pad-token fraction"], rows),
        "",
        f"- Token slots processed with buckets, relative to fixed 128: "
        f"{_f(c['token_slots_ratio_buckets_vs_fixed'], 2)}×; packed, relative to buckets: "
        f"{_f(c['token_slots_ratio_packed_vs_buckets'], 2)}×.",
        "", _source(res, path),
    ])  # fmt: skip


def compile_cache(res: dict, path: pathlib.Path) -> str:
    c = res["cases"]["compile"]
    # Results from before the case had two configs hold the tiny one's fields at the top level.
    configs = c.get("configs") or [{"name": "tiny", **c}]
    rows = [
        [f"`{k['name']}`", ("first (empty cache)" if r["run"] == 1 else "second (identical)"),
         f"{r['compile_seconds']:.2f}", f"{r['cache_hits']} / {r['cache_misses']}",
         f"{r['train_programs']} / {r['eval_programs']}", f"{r['cache_files']}",
         f"{r['cache_bytes'] / 2**20:.1f}", f"{r['wall_s']:.1f}"]
        for k in configs for r in k["runs"]
    ]  # fmt: skip
    ratios = [
        f"- `{k['name']}`: compile seconds, first / second: {k['compile_ratio']:.1f}× "
        f"(goal ≥ 10×: {'met' if k['compile_ratio'] >= 10 else 'missed'}); wall: "
        f"{k['wall_ratio']:.2f}×."
        for k in configs
    ]
    return "\n".join([
        "Each command twice, each a fresh process, the first with an empty cache folder "
        "(compile seconds, hits and misses are the run's own `compilations` event in "
        "`metrics.jsonl`; on a hit, the seconds are loading the cached executable):",
        "",
        *[f"- `{k['name']}`: `python {k['command']}`" for k in configs],
        "",
        _table(["config", "run", "XLA compile s", "cache hits / misses", "train / eval programs",
                "cache files", "cache MiB", "wall s"], rows),
        "",
        *ratios,
        _load_after(c, "runs"),
        "", _source(res, path),
    ])  # fmt: skip


def mlm(res: dict, path: pathlib.Path) -> str:
    c = res["cases"]["mlm"]
    # No FLOPs column: XLA's cost analysis of the masked-only program counts both branches of
    # its lax.cond (the dense fallback too), so it would not show the work a step does.
    rows = [
        ["jaxtl (decodes the masked positions)", f"{c['jaxtl_median_s']:.3f}", "1.00"],
        ["jaxtl decoding every position", f"{c['jaxtl_every_position_median_s']:.3f}",
         f"{1 / c['ratio_vs_every_position_median']:.2f}"],
        ["transformers BertForMaskedLM (PyTorch)", f"{c['torch_median_s']:.3f}",
         f"{1 / c['ratio_median']:.2f}"],
    ]  # fmt: skip
    return "\n".join([
        f"One full fine-tuning step of encoder + tied MLM head, B = {c['batch_size']}, "
        f"T = {c['seq_len']}, {c['masked']:,} of {c['batch_size'] * c['seq_len']:,} positions "
        f"masked (15%), vocabulary {c['vocab_size']:,}; median of alternated steps.",
        "",
        _table(["system", "step s (median)", "time / jaxtl's"], rows),
        "",
        f"- jaxtl / PyTorch: {c['ratio_median']:.2f}× (median of per-round ratios); decoding "
        f"the masked positions only vs every position: {c['ratio_vs_every_position_median']:.2f}×.",
        f"- First-step loss, masked positions only / every position: "
        f"{c['loss_masked_only']:.6f} / {c['loss_every_position']:.6f} (same parameters, batch "
        "and dropout key).",
        _load_after(c, "case"),
        "", _source(res, path),
    ])  # fmt: skip


def embed(res: dict, path: pathlib.Path) -> str:
    c = res["cases"]["embed"]
    n = c["sentences"]
    model = c.get("model", "minilm")  # results from before the key: the packaged model
    model = "the packaged all-MiniLM-L6-v2" if model == "minilm" else f"`{model}`"
    rows = [
        ["jaxtl (`jaxtl --embed`, packed rows)", f"{c['jaxtl_median_s']:.2f}",
         f"{n / c['jaxtl_median_s']:,.0f}", "1.00"],
        ["sentence-transformers `encode` (PyTorch)", f"{c['torch_median_s']:.2f}",
         f"{n / c['torch_median_s']:,.0f}", f"{1 / c['ratio_median']:.2f}"],
    ]  # fmt: skip
    return "\n".join([
        f"The first {n:,} SST-2 training sentences embedded by {model} "
        f"({c['settings']}), batch 64; medians of {len(c['jaxtl_s'])} alternated passes after "
        "one untimed pass each.",
        "",
        _table(["system", "s per pass (median)", "sentences/s", "time / jaxtl's"], rows),
        "",
        f"- jaxtl / sentence-transformers: {c['ratio_median']:.2f}× (median of per-round "
        f"ratios); jaxtl's first pass, compiling included: {c['jaxtl_first_pass_s']:.1f} s.",
        f"- Largest difference between the two systems' vectors: {c['max_abs_diff']:.1e}.",
        _load_after(c, "case"),
        "", _source(res, path),
    ])  # fmt: skip


def checkpoint(res: dict, path: pathlib.Path) -> str:
    c = res["cases"]["checkpoint"]
    by = {r["mode"]: r for r in c["rows"]}

    def table(kind: str, first: str, count: str) -> str:
        return _table(
            [first, "every", count, "wall s (rounds)", "wall s (median)", "dev acc %", "cost s",
             "cost s / save", "peak RSS MiB"],
            [[r["mode"], r["every"] or "–", r["saves"], ", ".join(f"{w:.1f}" for w in r["wall_s"]),
              f"{r['wall_median_s']:.1f}", f"{100 * r['accuracy']:.2f}",
              f"{r['checkpoint_cost_s']:+.1f}" if r["saves"] else "–",
              _f(r["cost_per_save_s"], 2),
              f"{r['peak_rss_mib']:.0f}" if r.get("peak_rss_mib") else "–"]
             for r in c["rows"] if r.get("saving", "checkpoint") == kind],
        )  # fmt: skip

    def versus(what: str, bg: dict | None, loop: dict | None) -> list[str]:
        if not (bg and loop and bg["cost_per_save_s"] is not None and loop["cost_per_save_s"]):
            return []
        return [
            f"- jaxtl, seconds {what} costs the run: {_f(bg['cost_per_save_s'], 2)} in the "
            f"background vs {_f(loop['cost_per_save_s'], 2)} in the loop "
            f"({bg['cost_per_save_s'] / loop['cost_per_save_s']:.2f}×)."
        ]

    bg = by.get("jaxtl, in the background (default)")
    hf = by.get("HF Trainer, save_steps")
    lines = versus("a checkpoint", bg, by.get("jaxtl, in the loop (checkpoint.async_save=False)"))
    if bg and hf and hf["cost_per_save_s"]:
        lines.append(
            f"- Against the HF Trainer's {_f(hf['cost_per_save_s'], 2)} s a save: "
            f"{bg['cost_per_save_s'] / hf['cost_per_save_s']:.2f}×."
        )
    best = [r for r in c["rows"] if r.get("saving") == "best params"]
    best_part = []
    if best:
        evals = max(r["evaluations"] or 0 for r in best)
        best_part = [
            "",
            f"Best params: jaxtl evaluating every {c['every']} steps on {c['dev_examples']:,} "
            f"dev examples ({evals} evaluations a run), with `train.save_best` (each "
            "evaluation that improves on the earlier ones writes the params to `best/`; "
            "*saves* counts them) and without.",
            "",
            table("best params", "jaxtl, best params", "saves"),
            "",
            *versus(
                "a best-params write",
                by.get("jaxtl, best params in the background (checkpoint.async_best=True)"),
                by.get("jaxtl, best params in the loop (default)"),
            ),
        ]
    return "\n".join([
        f"The e2e recipe on the first {c['train_examples']:,} SST-2 training examples, one epoch "
        f"(the Trainer {c['trainer_steps']} steps, jaxtl {c['jaxtl_steps']} packed steps), a "
        f"checkpoint every {c['every']} steps or none; each run a fresh process, the systems "
        "and modes in turn, wall time from model load to dev accuracy (jaxtl's programs loaded "
        "from a compile cache an untimed run filled). A save's cost is the median wall time "
        "with saves minus without, over the saves. jaxtl saves the whole train state "
        "(params, AdamW moments, step, RNG) with SHA-256 checksums; the Trainer its model, "
        "optimizer, scheduler and RNG states.",
        "",
        table("checkpoint", "system, checkpointing", "saves"),
        "",
        *lines,
        *best_part,
        _load_after(c, "runs"),
        "", _source(res, path),
    ])  # fmt: skip


def families(res: dict, path: pathlib.Path) -> str:
    from bench.families import render_families

    return "\n".join([*render_families(res["cases"]["families"]), "", _source(res, path)])


RENDER: dict[str, Callable[[dict, pathlib.Path], str]] = {
    "meta": meta, "step": step, "forward": forward, "e2e": e2e, "cache": cache,
    "e2e_full": lambda res, path: e2e(res, path, "e2e_full"),
    "memory": memory, "scaling": scaling, "accelerator": accelerator, "padding": padding,
    "families": families, "compile": compile_cache, "mlm": mlm, "checkpoint": checkpoint,
    "embed": embed, "data_scale": lambda res, path: _data_scale(res, path),
}  # fmt: skip


def _data_scale(res: dict, path: pathlib.Path) -> str:
    from bench.data_scale import render

    return render({**res["cases"]["data_scale"], "command": res["command"]}, _rel(path))


HEADER = """# Benchmarks: jaxtl vs transformers + PyTorch

Generated by `python bench/run.py` (tables between the `bench:` markers are rewritten by each run;
the rest is prose). Every number comes from the command written under its table.
"""


def update_markdown(md: pathlib.Path, res: dict, results_path: pathlib.Path) -> None:
    text = md.read_text() if md.exists() else HEADER
    # A partial run (--cases) rewrites only its own sections; each names its command and file.
    # The run-wide section is rewritten by a run of every MiniLM case; the families and
    # data-scale cases are sections of their own and may run alone or be left out.
    full_run = all(n in res["cases"] for n in SECTIONS if n not in ("meta", *OWN_RUN))
    present = [*(["meta"] if full_run else []), *[n for n in SECTIONS if n in res["cases"]]]
    for name in present:
        body = RENDER[name](res, results_path)
        start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
        block = f"{start}\n{body}\n{end}"
        pat = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
        if pat.search(text):
            text = pat.sub(lambda _, b=block: b, text)
        else:
            text = text.rstrip("\n") + f"\n\n## {TITLES[name]}\n\n{block}\n"
    md.write_text(text)
