"""The run's runtime: multi-process start-up, the device mesh and the compute precision."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from jaxtl import mesh as mesh_lib


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
    return mesh_lib.make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor)


def compute_dtype(config: ml_collections.ConfigDict) -> Any:
    """Precision policy: params and optimizer state stay f32; compute in bf16 on GPU/TPU."""
    name = config.model.compute_dtype
    if name == "auto":
        return jnp.bfloat16 if jax.default_backend() in ("gpu", "tpu") else jnp.float32
    if name not in ("float32", "bfloat16"):
        raise ValueError(f"model.compute_dtype={name!r}: use auto, float32 or bfloat16")
    return jnp.dtype(name)
