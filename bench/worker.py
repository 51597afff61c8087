"""One measurement per process, for what a process-wide number needs (peak RSS, device count).

    python -m bench.worker memory  jaxtl|torch  full|frozen|lora  SETTINGS_JSON
    python -m bench.worker scaling N_DEVICES  SETTINGS_JSON   (XLA_FLAGS sets the device count)
    python -m bench.worker e2e STEPS N_TRAIN N_DEV CACHE_DIR  SETTINGS_JSON

Prints one JSON object on its last stdout line. The memory worker of one system never imports
the other system's framework, so its peak RSS is its own.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from bench.common import Settings, median, peak_rss_mib, ru_maxrss_mib


def _settings(raw: str) -> Settings:
    d = json.loads(raw)
    d["seq_lens"] = tuple(d["seq_lens"])
    d["scaling_devices"] = tuple(d["scaling_devices"])
    d["seeds"] = tuple(d.get("seeds", ()))
    return Settings(**d)


def _vocab(s: Settings) -> int:
    from bench.common import model_dir

    return int(json.loads((model_dir(s.model) / "config.json").read_text())["vocab_size"])


def _random_batch(s: Settings, t: int) -> dict:
    # numpy only (bench.jaxtl_side imports jax, which the torch worker must not load)
    import numpy as np

    rng = np.random.default_rng(s.seed)
    b = s.batch_size
    ids = rng.integers(1000, _vocab(s), (b, t), dtype=np.int32)
    ids[:, 0] = 101
    return {
        "input_ids": ids,
        "attention_mask": np.ones((b, t), np.int32),
        "token_type_ids": np.zeros((b, t), np.int32),
        "token_labels": np.full((b, t), -100, np.int32),
        "label": rng.integers(0, 2, b, dtype=np.int32),
        "score": np.zeros((b,), np.float32),
        "example_weight": np.ones((b,), np.float32),
        "task_id": np.zeros((b,), np.int32),
    }


def memory(system: str, strategy: str, s: Settings) -> dict[str, Any]:
    t = max(s.seq_lens)
    batch = _random_batch(s, t)
    base_rss = peak_rss_mib()
    phases: dict[str, float] = {}  # peak RSS (VmHWM) after each phase, MiB
    extra: dict[str, Any] = {}
    if system == "jaxtl":
        from bench import jaxtl_side as J
        from jaxtl import runtime

        runtime.set_cpu_kernels(s.cpu_kernels)
        phases["imports"] = peak_rss_mib()
        model, _ = J.build_model(s, strategy, tokenizer=False)
        phases["model"] = peak_rss_mib()
        st = J.train_setup(s, strategy, batch, model=model, tokenizer=False)
        phases["compile"] = peak_rss_mib()
        # XLA's own account of the step: its temporary buffers (activations, gradients,
        # intermediates) on top of the donated state.
        ma = st.step.memory_analysis()
        extra["xla_temp_bytes"] = int(getattr(ma, "temp_size_in_bytes", 0))
        extra["xla_argument_bytes"] = int(getattr(ma, "argument_size_in_bytes", 0))
        for _ in range(s.memory_steps):
            st.run()
        phases["steps"] = peak_rss_mib()
        opt_bytes, trainable = st.opt_state_bytes, st.trainable_params
        if "torch" in sys.modules:
            raise RuntimeError("the jaxtl memory worker imported torch; its RSS would include it")
    elif system == "torch":
        from bench import torch_side as T

        T.set_threads()
        phases["imports"] = peak_rss_mib()
        # Head/LoRA init values do not change memory; zeros of the right shapes stand in for the
        # jaxtl params this twin would otherwise copy (so jax is never imported here).
        params = _zero_head_params(s, strategy)
        st = T.train_setup(s, strategy, params, batch)
        phases["model"] = peak_rss_mib()
        for _ in range(s.memory_steps):
            st.run()
        phases["steps"] = peak_rss_mib()
        opt_bytes, trainable = T.optimizer_state_bytes(st.opt), st.trainable_params
    else:
        raise ValueError(f"unknown system {system!r}; expected jaxtl or torch")
    return {
        "system": system,
        "strategy": strategy,
        "seq_len": t,
        "batch_size": s.batch_size,
        "steps": s.memory_steps,
        "trainable_params": int(trainable),
        "opt_state_bytes": int(opt_bytes),
        "rss_before_model_mib": base_rss,
        "peak_rss_mib": peak_rss_mib(),
        "peak_rss_by_phase_mib": phases,
        "ru_maxrss_mib": ru_maxrss_mib(),
        **extra,
    }


def _zero_head_params(s: Settings, strategy: str) -> dict:
    import numpy as np

    from bench.common import HEAD_KEY, model_dir

    cfg = json.loads((model_dir(s.model) / "config.json").read_text())
    h, n = cfg["hidden_size"], cfg["num_hidden_layers"]
    params: dict = {
        "heads": {HEAD_KEY: {"classifier": {"kernel": np.zeros((h, 2), np.float32),
                                            "bias": np.zeros((2,), np.float32)}}}
    }  # fmt: skip
    if strategy == "lora":
        a = {"lora_a": np.zeros((h, s.lora_rank), np.float32)}
        params["encoder"] = {"layers": [{"attention": {"query": a, "value": a}} for _ in range(n)]}
    return params


def scaling(n: int, s: Settings) -> dict[str, Any]:
    import jax

    from bench import jaxtl_side as J
    from jaxtl import mesh as mesh_lib
    from jaxtl import runtime

    runtime.set_cpu_kernels(s.cpu_kernels)
    if jax.device_count() != n:
        raise RuntimeError(
            f"expected {n} devices, found {jax.device_count()}: set "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={n}"
        )
    mesh = mesh_lib.make_mesh(data=1, fsdp=n, tensor=1)
    batch = _random_batch(s, s.scaling_seq_len)
    st = J.train_setup(s, "full", batch, mesh=mesh, tokenizer=False)
    param_dev = J.per_device_bytes(st.state.params)
    opt_dev = J.per_device_bytes(st.state.opt_state)
    for _ in range(s.warmup):
        st.run()
    times = []
    for _ in range(s.scaling_steps):
        t0 = time.perf_counter()
        st.run()
        times.append(time.perf_counter() - t0)
    return {
        "devices": n,
        "mesh": {"data": 1, "fsdp": n, "tensor": 1},
        "seq_len": s.scaling_seq_len,
        "batch_size": s.batch_size,
        "compile_s": st.compile_s,
        "step_s": times,
        "step_median_s": median(times),
        "per_device_param_bytes": param_dev,
        "per_device_opt_bytes": opt_dev,
        "per_device_bytes": param_dev + opt_dev,
        "total_param_bytes": st.param_bytes,
        "total_opt_bytes": st.opt_state_bytes,
        "flops": st.flops,
    }


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    if argv[0] == "memory" and len(argv) == 4:
        out = memory(argv[1], argv[2], _settings(argv[3]))
    elif argv[0] == "scaling" and len(argv) == 3:
        out = scaling(int(argv[1]), _settings(argv[2]))
    elif argv[0] == "e2e" and len(argv) == 6:
        from bench.cases import e2e_jaxtl

        steps, n_train, n_dev = map(int, argv[1:4])
        out = e2e_jaxtl(_settings(argv[5]), steps, n_train, n_dev, compile_cache=argv[4])
    else:
        raise SystemExit(f"bad arguments {argv}\n{__doc__}")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
