"""The one jitted, sharded train step and eval step that every regime drives.

A regime supplies a *loss function* over an NNX model; the step owns everything else: merging the
pure parameter dict into the model, dropout RNGs, gradients, micro-batch accumulation, the Optax
update (the partition built from the stage's freezing plan), per-task "untouched" parameter masks,
non-finite detection, shardings and donation.

Loss function contract::

    loss_fn(model, batch, rngs: nnx.Rngs, train: bool) -> (loss_sum, metrics)

``loss_sum`` is the *sum* of the per-example (or per-token) losses in the batch and
``metrics["denominator"]`` the number of terms it sums, so the step divides once. This makes
gradient accumulation exact: k micro-batches give sum(grads)/sum(denominators), the same number a
single big batch gives. Other entries of ``metrics`` are sums too and are divided by the
denominator for logging.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from jaxtl import mesh as mesh_lib
from jaxtl import paths, runtime

LossFn = Callable[[nnx.Module, dict, nnx.Rngs, bool], tuple[jax.Array, dict[str, jax.Array]]]
PredictFn = Callable[[nnx.Module, dict], dict[str, jax.Array]]
# Which parameters a batch may change: tree of bool scalars (False = leave param and its optimizer
# moments untouched), e.g. the heads of tasks that are not in the batch.
ActiveFn = Callable[[dict], Any]


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer steps taken in the whole run
    params: Any  # pure nested dict of arrays
    opt_state: Any
    rng: jax.Array  # uint32[2] raw key data; dropout keys are fold_in(rng, step)

    if TYPE_CHECKING:  # flax.struct.dataclass adds it; declared for the type checker

        def replace(self, **changes: Any) -> TrainState: ...


@dataclasses.dataclass
class CompileCounter:
    """Counts traces of the step: each trace of a jitted function is one compilation."""

    count: int = 0

    def bump(self) -> None:
        self.count += 1


def _scale_metrics(metrics: dict[str, jax.Array], denominator: jax.Array) -> dict[str, jax.Array]:
    den = jnp.maximum(denominator, 1.0)
    out = {k: v / den for k, v in metrics.items() if k != "denominator"}
    out["denominator"] = denominator
    return out


def make_train_step(
    graphdef: nnx.GraphDef,
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    *,
    accum_steps: int = 1,
    active_fn: ActiveFn | None = None,
    trainable_mask: Any = None,
    mesh: Mesh | None = None,
    state_shardings: Any = None,
    batch_shardings: Any = None,
    counter: CompileCounter | None = None,
    partitionable_rng: bool = True,
) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """Build ``step(state, batch) -> (state, metrics)``; jitted, state donated.

    ``partitionable_rng``: dropout's bits from JAX's partitionable threefry (the same bits
    however arrays are sharded) or, False, the classic one, which hashes about half as much
    and keeps fewer temporaries: the better choice on one device
    (:func:`jaxtl.runtime.partitionable_rng`). The two draw different bits.

    ``trainable_mask`` (a tree of Python bools shaped like the params, e.g. the phase's
    ``Phase.trainable_mask``) marks frozen parameters; their gradients are exact zeros that XLA
    never computes. Without it every gradient is formed and the optimizer alone decides.

    ``accum_steps`` > 1 splits the batch into that many equal micro-batches, scanned in order.
    Metrics come back as device scalars: ``loss`` (mean), ``grad_norm``, ``finite`` (1.0 if loss and
    gradients are finite; a non-finite step leaves params and optimizer state unchanged so the last
    good state survives) and the loss function's own metrics.
    """

    def loss_and_grads(params, batch, key, normalize: bool):
        def f(p):
            if trainable_mask is not None:
                # Frozen parameters enter as constants: their weight gradients are never
                # formed (and nothing downstream — grad norm, finite check, accumulation —
                # can make XLA compute them), so freezing really removes backward work.
                p = jax.tree.map(
                    lambda x, m: x if m else jax.lax.stop_gradient(x), p, trainable_mask
                )
            model = nnx.merge(graphdef, p)
            rngs = nnx.Rngs(dropout=key)
            total, metrics = loss_fn(model, batch, rngs, True)
            if not normalize:
                return total, (total, metrics)
            # The denominator depends on the batch alone, so d(total/den) = d(total)/den: the
            # backward pass starts from 1/den and the gradients come out divided, instead of a
            # separate pass over every gradient (for MiniLM's word embeddings alone, 47 MB read
            # and written again each step).
            den = jax.lax.stop_gradient(jnp.maximum(metrics["denominator"], 1.0))
            return total / den, (total, metrics)

        (_, (total, metrics)), grads = jax.value_and_grad(f, has_aux=True)(params)
        metrics = dict(metrics)
        metrics["loss_sum"] = total
        return grads, metrics

    def step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        if counter is not None:
            counter.bump()  # runs at trace time only
        with mesh_lib.activation_mesh(mesh), jax.threefry_partitionable(partitionable_rng):
            return _step(state, batch)

    def _step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        if accum_steps == 1:
            grads, metrics = loss_and_grads(state.params, batch, key, True)
        else:
            micro = jax.tree.map(
                lambda x: x.reshape((accum_steps, x.shape[0] // accum_steps) + x.shape[1:]), batch
            )

            def body(carry, xs):
                i, mb = xs
                g, m = loss_and_grads(state.params, mb, jax.random.fold_in(key, i), False)
                carry = jax.tree.map(jnp.add, carry, (g, m))
                return carry, None

            g0, m0 = jax.eval_shape(
                lambda p, mb: loss_and_grads(p, mb, key, False),
                state.params,
                jax.tree.map(lambda x: x[0], micro),
            )
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (g0, m0))
            (grads, metrics), _ = jax.lax.scan(body, zeros, (jnp.arange(accum_steps), micro))

        den = jnp.maximum(metrics["denominator"], 1.0)
        if accum_steps > 1:
            # Micro-batches sum their gradients; the step divides once by the total count.
            grads = jax.tree.map(lambda g: g / den, grads)
        grad_norm = optax.global_norm(grads)
        finite = jnp.isfinite(metrics["loss_sum"]) & jnp.isfinite(grad_norm)

        # A non-finite step changes nothing: the loop stops on it and the state stays good. The
        # optimizer runs under a cond rather than both outcomes being computed and selected with
        # where(): then the new parameters read the optimizer's new moments instead of recomputing
        # them from the old ones, so the donated moments have one reader and are updated in place.
        # With where(), XLA copied every Adam moment at the start of the step to keep the old
        # values for the second reader: 2 x the parameters' size held through the whole backward
        # (MiniLM B=32 T=128: XLA temporaries 1302 -> 1226 MiB; BENCHMARKS.md section 5). The new
        # parameters are formed inside the cond as well, so each one is computed in the same loop
        # as its update (a cond's outputs are materialised: applying the updates outside it read
        # and wrote every parameter-sized array once more), and the skip branch returns the old
        # state exactly.
        def optimize() -> tuple[Any, Any]:
            # The step's own global norm goes to jaxtl's clip (jaxtl.partition.optimizer), which
            # then does not take it a second time. Only with a trainable mask: frozen gradients
            # are then exact zeros, so this norm is the norm of the trainable gradients the clip
            # would have taken.
            extra = {"global_norm": grad_norm} if trainable_mask is not None else {}
            updates, new_opt = optax.with_extra_args_support(tx).update(
                grads, state.opt_state, state.params, **extra
            )
            new_params = optax.apply_updates(state.params, updates)
            if active_fn is not None:
                active = active_fn(batch)
                new_params = jax.tree.map(
                    lambda a, n, o: jnp.where(a, n, o), active, new_params, state.params
                )
                opt_active = paths.map_param_values(new_opt, state.params, active, True)
                new_opt = jax.tree.map(
                    lambda a, n, o: jnp.where(a, n, o), opt_active, new_opt, state.opt_state
                )
            return new_params, new_opt

        def skip() -> tuple[Any, Any]:
            return state.params, state.opt_state

        new_params, new_opt = jax.lax.cond(finite, optimize, skip)

        out = _scale_metrics({k: v for k, v in metrics.items() if k != "loss_sum"}, den)
        out["loss"] = metrics["loss_sum"] / den
        out["grad_norm"] = grad_norm
        out["finite"] = finite.astype(jnp.float32)
        new_state = state.replace(step=state.step + 1, params=new_params, opt_state=new_opt)
        return new_state, out

    kwargs: dict[str, Any] = {"donate_argnums": (0,)}
    if state_shardings is not None:
        kwargs["in_shardings"] = (state_shardings, batch_shardings)
        kwargs["out_shardings"] = (state_shardings, None)
    # Every parameter trains (full fine-tuning) or not, and the batch's size: the CPU kernels
    # may differ with both (runtime.cpu_kernels_for).
    full = trainable_mask is None or all(jax.tree.leaves(trainable_mask))
    return KernelsByShape(step, kwargs, "full_train" if full else "train", accum_steps)


def batch_tokens(batch: Any) -> int:
    """Rows x length of a batch: the largest leading two-dimensional extent among its arrays
    (the token ids of every task kind), or its rows where no array has two dimensions."""
    leaves = [x for x in jax.tree.leaves(batch) if hasattr(x, "shape") and x.ndim >= 1]
    if not leaves:
        return 0
    two = [x.shape[0] * x.shape[1] for x in leaves if x.ndim >= 2]
    return max(two) if two else max(x.shape[0] for x in leaves)


class KernelsByShape:
    """A jitted train step whose XLA compiler options are chosen per batch shape
    (:func:`jaxtl.runtime.compiler_options` of the program kind and the micro-batch's tokens):
    one ``jax.jit`` per distinct set of options, each compiling its shapes as usual. Called,
    lowered and traced like the jitted function."""

    def __init__(self, fn: Callable, jit_kwargs: dict[str, Any], program: str, accum_steps: int):
        self._fn, self._kwargs = fn, jit_kwargs
        self._program, self._accum = program, max(1, accum_steps)
        self._jitted: dict[tuple, Any] = {}  # by compiler options
        self._by_tokens: dict[int, Any] = {}  # by micro-batch tokens: options asked once each

    def jitted_for(self, batch: Any) -> Any:
        """The jitted step that runs ``batch`` (a batch of arrays or of shape structs)."""
        tokens = batch_tokens(batch) // self._accum
        if tokens not in self._by_tokens:
            options = runtime.compiler_options(self._program, tokens)
            key = tuple(sorted(options.items()))
            if key not in self._jitted:
                self._jitted[key] = jax.jit(self._fn, compiler_options=options, **self._kwargs)
            self._by_tokens[tokens] = self._jitted[key]
        return self._by_tokens[tokens]

    def __call__(self, state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        return self.jitted_for(batch)(state, batch)

    def lower(self, state: Any, batch: Any) -> Any:
        return self.jitted_for(batch).lower(state, batch)

    def trace(self, state: Any, batch: Any) -> Any:
        return self.jitted_for(batch).trace(state, batch)


def make_eval_step(
    graphdef: nnx.GraphDef,
    predict_fn: PredictFn,
    *,
    mesh: Mesh | None = None,
    params_shardings: Any = None,
    batch_shardings: Any = None,
    counter: CompileCounter | None = None,
) -> Callable[[Any, dict], dict]:
    """Build ``eval_step(params, batch) -> outputs`` (deterministic forward, no dropout)."""

    def eval_step(params, batch):
        if counter is not None:
            counter.bump()
        with mesh_lib.activation_mesh(mesh):
            model = nnx.merge(graphdef, params)
            return predict_fn(model, batch)

    kwargs: dict[str, Any] = {"compiler_options": runtime.compiler_options("other")}
    if params_shardings is not None:
        kwargs["in_shardings"] = (params_shardings, batch_shardings)
    return jax.jit(eval_step, **kwargs)


def init_state(params: Any, tx: optax.GradientTransformation, seed: int) -> TrainState:
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        rng=jax.random.key_data(jax.random.key(seed)),
    )
