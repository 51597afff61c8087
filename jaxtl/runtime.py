"""The run's runtime: multi-process start-up, the device mesh, the compute precision, the
persistent compilation cache and the compiler options of jaxtl's own programs.

Compiled XLA programs are cached on disk (JAX's persistent compilation cache), keyed by the
program and the backend, so the second run of a config on a machine skips compilation. The cache
lives in ``$XDG_CACHE_HOME/jaxtl/xla`` (default ``~/.cache/jaxtl/xla``); ``compile_cache`` names
another folder or ``off``. :class:`CompileStats` listens to JAX's monitoring events, so a run can
report its compile seconds and cache hits separately from training time.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import gc
import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from jaxtl import mesh as mesh_lib

log = logging.getLogger(__name__)


OFF = ("off", "false", "no", "none", "0")
ON = ("on", "true", "yes", "1")


def cache_dir(setting: str) -> str | None:
    """The compilation cache folder for ``compile_cache`` (``auto`` | ``off`` | a path). The
    spellings a flag user reaches for mean on/off, not a folder named "False" in the cwd."""
    word = setting.strip().lower()
    if word in OFF:
        return None
    if word in ("", "auto", *ON):
        root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return os.path.join(root, "jaxtl", "xla")
    return os.path.expanduser(setting)


def enable_compile_cache(config: ml_collections.ConfigDict) -> str | None:
    """Point JAX's persistent compilation cache at ``config.compile_cache`` (every program is
    cached, however quick its compile: on CPU the many small ones add up)."""
    folder = cache_dir(str(config.get("compile_cache", "auto")))
    if folder is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    if "://" not in folder:  # JAX writes a gs:// cache itself; a local one must exist
        os.makedirs(folder, exist_ok=True)
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return folder


CPU_KERNELS = ("auto", "xla", "ynnpack")
# XLA:CPU's option naming the YNNPACK library fusions (jaxlib 0.10: individual dots and
# reductions) that jaxlib enables by default; an empty value hands them back to XLA's own code
# generator.
_YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"
# How a YNNPACK library fusion is named in a compiled program's text.
_YNN_FUSION = "__ynn_fusion"
_cpu_kernels = "auto"
# What a compiled program is, for cpu_kernels=auto: a train step that updates every parameter,
# any other train step (LoRA, frozen or partly frozen encoders), anything else (eval, features).
# The two train kinds share one rule today, but were measured apart and have differed (at 32
# rows of 128, YNNPACK took 0.96x for the full step and 1.09x for LoRA on an AVX-512 EPYC).
PROGRAMS = ("full_train", "train", "other")
# cpu_kernels=auto takes YNNPACK's kernels for train steps of at most this many tokens (rows x
# length of one micro-batch): measured faster there on Intel and AMD CPUs (full and LoRA steps of
# B=32 T=64 on an AVX-512 EPYC: 0.91x, 0.93x), while larger steps were slower on some and needed
# more memory on all (compiler_options).
YNNPACK_MAX_TOKENS = 2048


def set_cpu_kernels(setting: str) -> None:
    """Choose the CPU kernels of the train, eval and feature steps compiled from now on
    (``cpu_kernels``: ``auto`` | ``xla`` | ``ynnpack``); see :func:`compiler_options`."""
    global _cpu_kernels
    value = str(setting).lower()
    if value not in CPU_KERNELS:
        raise ValueError(f"cpu_kernels={setting!r}: choose one of {', '.join(CPU_KERNELS)}")
    _cpu_kernels = value


def configure_compiler(config: ml_collections.ConfigDict) -> str | None:
    """Apply a config's compiler settings, as every entry point (a run, a predictor) does: the
    persistent cache (``compile_cache``, returns its folder or None) and ``cpu_kernels``."""
    folder = enable_compile_cache(config)
    set_cpu_kernels(config.get("cpu_kernels", "auto"))
    return folder


def cpu_kernels_for(program: str = "other", tokens: int | None = None) -> str:
    """The kernels (``xla`` or ``ynnpack``) a ``program`` of :data:`PROGRAMS` compiles with;
    ``tokens``: rows x length of the (micro-)batch it is compiled for, where known."""
    if program not in PROGRAMS:
        raise ValueError(f"program={program!r}: one of {', '.join(PROGRAMS)}")
    if _cpu_kernels != "auto":
        return _cpu_kernels
    small = tokens is not None and tokens <= YNNPACK_MAX_TOKENS
    return "ynnpack" if program != "other" and small else "xla"


def compiler_options(program: str = "other", tokens: int | None = None) -> dict[str, Any]:
    """XLA options for jaxtl's own steps (``jax.jit(..., compiler_options=...)``); ``program``
    is one of :data:`PROGRAMS`, ``tokens`` as for :func:`cpu_kernels_for`.

    On CPU the choice is which kernels do the matmuls and reductions: XLA's own fused loops and
    Eigen's matmul (``xla``), or the YNNPACK library fusions jaxlib enables by default
    (``ynnpack``, which this then leaves alone). ``auto``, the default, takes YNNPACK for train
    steps (full, LoRA, frozen or partly frozen) on at most :data:`YNNPACK_MAX_TOKENS` tokens (the
    packed rows of a sentence task's usual recipe, or 32 rows of 64) and XLA's kernels for
    everything else, as measured on 2-core machines (BENCHMARKS.md, Findings; ``python -m
    bench.step_variants`` measures another). With YNNPACK the full MiniLM step of 3 rows of 128
    took 0.89x as long on an Intel Xeon and 0.89-0.91x on an AMD EPYC (its reductions replace
    XLA's reduce-window kernels), the SST-2 epoch 0.85x (Xeon) and 8,192 examples 0.88-0.96x
    (EPYC); at 8 and 16 rows 0.99x (EPYC); at 32 rows 0.95x (Xeon) but 1.04-1.17x (EPYC), with
    216 MiB more XLA temporaries. On an EPYC with AVX-512 (YNNPACK's matmuls use it, the Eigen
    matmul jaxlib was built with does not), 2,048 tokens (16 rows of 128, 32 of 64) took 0.91x
    with 56 MiB more peak RSS, and 32 rows of 128 0.96x with 216 MiB more, above PyTorch's
    peak: hence the limit of 2,048. LoRA steps took 0.92-0.93x at 3 rows of 128 and 32 of 64 on
    that EPYC, 0.99-1.01x at 3 rows on the Xeon and the other EPYC, but 1.09-1.24x at 32 rows
    of 128; the eval forward pass (32 rows of 128) 1.15-1.23x on both EPYCs. Nothing
    changes on GPU/TPU, when the user's ``XLA_FLAGS`` already sets the option, or when this
    jaxlib does not know it. Only jaxtl's programs are affected: other code in the process
    keeps jaxlib's defaults."""
    if cpu_kernels_for(program, tokens) != "xla" or jax.default_backend() != "cpu":
        return {}
    if _YNN_OPTION in os.environ.get("XLA_FLAGS", "") or not _option_known(_YNN_OPTION, ""):
        return {}
    return {_YNN_OPTION: ""}


@functools.cache
def compiled_cpu_kernels(compiled: Any) -> str:
    """Which CPU kernels a compiled program runs: ``ynnpack`` when it holds YNNPACK library
    fusions, ``xla`` when not (XLA's own loops and Eigen's matmul), ``—`` off the CPU. Read
    from the compiled program itself, so it states what ran, whatever chose it
    (``cpu_kernels``, its per-shape rule, or a user's ``XLA_FLAGS``)."""
    if jax.default_backend() != "cpu":
        return "—"
    return "ynnpack" if _YNN_FUSION in compiled.as_text() else "xla"


@functools.cache  # a property of the jaxlib: probed once, not once per program that asks
def _option_known(name: str, value: Any) -> bool:
    """Whether this jaxlib's compiler accepts ``name=value`` (options come and go between XLA
    versions; an unknown one fails every compile that passes it)."""
    try:
        jax.jit(lambda x: x + 1).lower(jnp.float32(0)).compile(compiler_options={name: value})
    except Exception:  # XlaRuntimeError: INVALID_ARGUMENT for an unknown option or value
        log.info("XLA option %s=%r not known to this jaxlib; left at its default", name, value)
        return False
    return True


def partitionable_rng(setting: str = "auto") -> bool:
    """Whether train steps draw dropout bits with JAX's partitionable threefry
    (``prng_partitionable``: ``auto`` | ``true`` | ``false``). ``auto``: only when there is more
    than one device — partitionable bits avoid gathering random state across shards, but on a
    single device they cost about twice the hashing of the classic generator for nothing. A
    resumed run keeps the setting (``check_resume``); ``auto`` on another device count draws
    other bits, as re-sharding also changes the arithmetic."""
    value = str(setting).lower()
    if value not in ("auto", "true", "false"):
        raise ValueError(f"prng_partitionable={setting!r}: choose one of auto, true, false")
    return jax.device_count() > 1 if value == "auto" else value == "true"


@dataclasses.dataclass
class CompileStats:
    """Compile seconds and persistent-cache hits/misses seen since :meth:`start` (process-wide:
    JAX reports them through ``jax.monitoring``; the listeners are registered once)."""

    backend_seconds: float = 0.0
    cache_hits: int = 0
    cache_misses: int = 0

    def snapshot(self, since: dict[str, float] | None = None) -> dict[str, float]:
        """The counts so far, or since an earlier snapshot."""
        now = {"compile_seconds": self.backend_seconds, "cache_hits": self.cache_hits,
               "cache_misses": self.cache_misses}  # fmt: skip
        since = since or {}
        return {k: round(v - since.get(k, 0), 3) for k, v in now.items()}


STATS = CompileStats()
_listening = False


def release_freed_memory() -> bool:
    """Return heap memory that is freed but still held by the allocator to the OS (glibc's
    ``malloc_trim``); False where there is no glibc (macOS, musl), which is harmless."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


@functools.cache
def _glibc() -> Any:
    """glibc, loaded once (every compile calls release_freed_memory); None without it."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


# A full collection (generation 2) after every FULL_GC_EVERY collections of generation 1
# (CPython's default: 10).
FULL_GC_EVERY = 100


def quiet_garbage_collector() -> None:
    """The ``jaxtl`` command's collector settings (the library leaves research code's alone).
    A full collection walks every object the process holds — after importing jax, flax and
    transformers, several hundred thousand — and tracing and compiling make short-lived objects
    fast enough for CPython to run one every second or so: ten in a 10-s tiny run, about 1 s of
    it (BENCHMARKS.md, "Garbage collection"). The objects alive now (imported modules, mostly) are
    moved out of the collector's view for good (``gc.freeze``), and full collections come ten
    times more rarely; young cycles are still collected as before. Training loops such as
    OLMo-core's and torchtitan's skip full collections altogether."""
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_GC_EVERY)


def listen_to_compiles() -> CompileStats:
    global _listening
    if not _listening:
        from jax import monitoring

        def on_duration(event: str, duration_secs: float, **kwargs: str | int) -> None:
            if event == "/jax/core/compile/backend_compile_duration":
                STATS.backend_seconds += duration_secs
                # The compiler's working memory is freed by now but glibc keeps it mapped, and
                # the program's buffers are mapped afresh on top of it: hand it back before the
                # program runs (BENCHMARKS.md section 5).
                release_freed_memory()

        def on_event(event: str, **kwargs: str | int) -> None:
            if event == "/jax/compilation_cache/cache_hits":
                STATS.cache_hits += 1
            elif event == "/jax/compilation_cache/cache_misses":
                STATS.cache_misses += 1

        monitoring.register_event_duration_secs_listener(on_duration)
        monitoring.register_event_listener(on_event)
        _listening = True
    return STATS


def init_distributed(config: ml_collections.ConfigDict) -> None:
    """``jax.distributed.initialize`` when asked; must run before any other JAX call."""
    d = config.distributed
    if d.enabled and not jax.distributed.is_initialized():
        mesh_lib.maybe_initialize_distributed(
            d.coordinator or None,
            d.num_processes or None,
            d.process_id if d.process_id >= 0 else None,
        )


def setup_mesh(config: ml_collections.ConfigDict) -> jax.sharding.Mesh:
    init_distributed(config)
    mesh = mesh_lib.make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor)
    # Every batch is split over (data, fsdp): say so before any model or data is loaded, rather
    # than let the first device_put fail with a sharding error.
    shards = int(mesh.shape["data"] * mesh.shape["fsdp"])
    t = config.train
    for key, rows in (("train.batch_size", t.batch_size // max(1, t.accum_steps)),
                      ("train.eval_batch_size", t.eval_batch_size)):  # fmt: skip
        if rows % shards:
            what = (
                "rows per micro-batch " if key == "train.batch_size" and t.accum_steps > 1 else ""
            )
            raise ValueError(
                f"{key}={rows} {what}is not divisible by the {shards} batch shards "
                f"(mesh data×fsdp = {mesh.shape['data']}×{mesh.shape['fsdp']} over "
                f"{jax.device_count()} devices): use a multiple of {shards}"
            )
    return mesh


def compute_dtype(config: ml_collections.ConfigDict) -> Any:
    """Precision policy: params and optimizer state stay f32; compute in bf16 on GPU/TPU."""
    name = config.model.compute_dtype
    if name == "auto":
        return jnp.bfloat16 if jax.default_backend() in ("gpu", "tpu") else jnp.float32
    if name not in ("float32", "bfloat16"):
        raise ValueError(f"model.compute_dtype={name!r}: use auto, float32 or bfloat16")
    return jnp.dtype(name)
