"""Device mesh, logical-axis rules, and the shardings of parameters, optimizer state and batches.

The mesh has three named axes: ``data`` (pure data parallelism: params replicated), ``fsdp``
(data parallelism whose params and optimizer state are sharded, ZeRO-3 style) and ``tensor``
(Megatron-style model parallelism over attention heads and MLP width). Batches are split over
``("data", "fsdp")``.

Models annotate parameters with *logical* axis names (``vocab``, ``embed``, ``mlp``, ``heads`` ...).
``LOGICAL_RULES`` maps those to the ``tensor`` axis; FSDP then shards, for each parameter, the
largest dimension that is divisible by the ``fsdp`` size and not already tensor-sharded. Dimensions
that do not divide evenly stay replicated rather than failing, so every model fits every mesh.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxtl import paths

AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# logical name -> mesh axis (or None = replicated along that dimension)
LOGICAL_RULES: dict[str, str | None] = {
    "vocab": "tensor",
    "mlp": "tensor",
    "heads": "tensor",
    "embed": None,  # FSDP picks the largest dimension below; embed is usually it
    "kv": None,
    "labels": None,
    "layers": None,
    "norm": None,
}


def mesh_shape(
    data: int = -1, fsdp: int = 1, tensor: int = 1, num_devices: int | None = None
) -> tuple[int, int, int]:
    """Resolve one -1 ("the rest") and check the product equals the device count."""
    n = jax.device_count() if num_devices is None else num_devices
    dims = [data, fsdp, tensor]
    if sum(d == -1 for d in dims) > 1:
        raise ValueError(f"mesh: at most one of mesh.data/fsdp/tensor may be -1, got {dims}")
    for name, d in zip(AXES, dims):
        if d == 0 or d < -1:
            raise ValueError(f"mesh.{name}={d}: sizes are positive or -1")
    known = int(np.prod([d for d in dims if d != -1]))
    if -1 in dims:
        if n % known:
            fixed = ", ".join(f"mesh.{a}={d}" for a, d in zip(AXES, dims) if d != -1)
            raise ValueError(
                f"mesh: {fixed} need a multiple of {known} devices, but {n} "
                f"{'is' if n == 1 else 'are'} available"
            )
        dims[dims.index(-1)] = n // known
    if int(np.prod(dims)) != n:
        raise ValueError(
            f"mesh: data×fsdp×tensor = {dims[0]}×{dims[1]}×{dims[2]} = {int(np.prod(dims))} "
            f"but {n} devices are available (use -1 for 'the rest')"
        )
    return tuple(dims)  # type: ignore[return-value]


def make_mesh(
    data: int = -1, fsdp: int = 1, tensor: int = 1, devices: Sequence[Any] | None = None
) -> Mesh:
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(data, fsdp, tensor, num_devices=len(devices))
    # Auto axis types = classic GSPMD propagation under jit with in/out shardings.
    return jax.make_mesh(
        shape,
        AXES,
        axis_types=(jax.sharding.AxisType.Auto,) * 3,
        devices=devices,
    )


def spec_for(shape: tuple[int, ...], logical: Sequence[str | None] | None, mesh: Mesh) -> P:
    """Mesh PartitionSpec for one parameter from its logical names and its shape."""
    ndim = len(shape)
    names = list(logical) if logical else [None] * ndim
    if len(names) != ndim:
        names = [None] * ndim  # metadata that does not describe this array is ignored
    spec: list[Any] = [None] * ndim
    for i, name in enumerate(names):
        axis = LOGICAL_RULES.get(name) if name else None
        if axis and mesh.shape[axis] > 1 and shape[i] % mesh.shape[axis] == 0:
            spec[i] = axis
    fsdp = mesh.shape["fsdp"]
    # Vectors (biases, norms) stay replicated: sharding them saves nothing and mixing fsdp on a
    # bias with tensor on its kernel's matching dimension only adds resharding.
    if fsdp > 1 and ndim >= 2:
        candidates = [i for i in range(ndim) if spec[i] is None and shape[i] % fsdp == 0]
        if candidates:
            spec[max(candidates, key=lambda i: shape[i])] = "fsdp"
    return P(*spec)


def logical_specs(model_params_state: Any) -> dict[str, tuple | None]:
    """{path: logical names} from an ``nnx.State`` of Params (metadata ``out_sharding``)."""
    from flax import nnx

    specs = nnx.get_partition_spec(model_params_state)
    pure = nnx.to_pure_dict(specs)
    return {p: (tuple(v) if isinstance(v, P) else None) for p, v in paths.flatten(pure).items()}


def param_shardings(params: Any, logical: dict[str, tuple | None], mesh: Mesh) -> Any:
    """NamedSharding per parameter (``params`` may be abstract ShapeDtypeStructs)."""
    return paths.map_with_path(
        lambda p, x: NamedSharding(mesh, spec_for(tuple(x.shape), logical.get(p), mesh)), params
    )


def like_params_shardings(tree: Any, params: Any, p_shardings: Any, mesh: Mesh) -> Any:
    """Shardings for a tree that mirrors params somewhere inside (optimizer state, EMA ...).

    A leaf whose path ends with a parameter's path and has that parameter's shape gets the
    parameter's sharding; everything else (step counters, scalars) is replicated.
    """
    return paths.map_param_values(tree, params, p_shardings, NamedSharding(mesh, P()))


_ACTIVATION_MESH: contextvars.ContextVar[Mesh | None] = contextvars.ContextVar(
    "jaxtl_activation_mesh", default=None
)


@contextlib.contextmanager
def activation_mesh(mesh: Mesh | None) -> Iterator[None]:
    """Within this context (entered by the step at trace time) ``constrain_batch`` is active."""
    token = _ACTIVATION_MESH.set(mesh)
    try:
        yield
    finally:
        _ACTIVATION_MESH.reset(token)


def constrain_batch(x: jax.Array) -> jax.Array:
    """Pin an activation [B, ...] to the batch sharding; a no-op outside a sharded step.

    Encoders call this on every block's output. Besides keeping activations data-parallel, it
    works around wrong gradients from XLA's sharding propagation (jax 0.10, CPU) when a weight is
    sharded over both fsdp and tensor and nothing constrains the activations between layers.
    """
    mesh = _ACTIVATION_MESH.get()
    if mesh is None or mesh.size == 1:
        return x
    return jax.lax.with_sharding_constraint(x, batch_sharding(mesh, x.ndim))


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
    return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Host batch → global arrays split over (data, fsdp).

    Each process passes only its own rows (its share of the global batch); with one process that
    is the whole batch. ``make_array_from_process_local_data`` assembles the global array.
    """
    out = {}
    for k, v in batch.items():
        v = np.asarray(v)
        sh = batch_sharding(mesh, v.ndim) if v.ndim else replicated(mesh)
        if jax.process_count() == 1:
            out[k] = jax.device_put(v, sh)
        else:
            out[k] = jax.make_array_from_process_local_data(sh, v)
    return out


def maybe_initialize_distributed(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> None:
    """Multi-host start-up: explicit coordinator flags, or the TPU/SLURM environment."""
    if coordinator:
        jax.distributed.initialize(coordinator, num_processes, process_id)
    else:
        jax.distributed.initialize()
