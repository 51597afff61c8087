"""The jaxtl side of the benchmarks, built from jaxtl's own pieces.

A classifier is ``TransferModel(encoder, {"glue_sst2": ClassificationHead})`` exactly as
``jaxtl.assembly.build_model`` makes it, trained by ``jaxtl.step.make_train_step`` with
``jaxtl.objectives.switch_loss`` and the optimizer that ``jaxtl.partition.phases_from_config`` compiles
from an ``optim`` config, so what is timed is the step every regime runs.

Strategies (names used across the benchmark):

- ``full``: ``optim.strategy=finetune``.
- ``frozen``: ``optim.strategy=feature_extraction`` (encoder frozen through optax.partition with
  set_to_zero, so XLA drops its backward work and it gets no Adam state).
- ``bottom_half``: ``optim.strategy=top_k`` with ``top_k = L // 2`` (embeddings and blocks
  ``0 .. L/2-1`` frozen).
- ``lora``: ``jaxtl.peft.apply_lora`` on query and value (rank 8, alpha 16) with
  ``optim.strategy=lora`` (only LoRA factors and the head train).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from bench.common import HEAD_KEY, TASK, Settings
from jaxtl import models, objectives, partition, peft, runtime
from jaxtl import step as step_lib
from jaxtl.data import get_task
from jaxtl.data.prepare import TaskData

STRATEGIES = ("full", "frozen", "bottom_half", "lora")


def optim_config(strategy: str, num_layers: int, s: Settings) -> Any:
    cfg = partition.default_optim_config()
    cfg.lr = s.lr
    if strategy == "full":
        cfg.strategy = "finetune"
    elif strategy == "frozen":
        cfg.strategy = "feature_extraction"
    elif strategy == "bottom_half":
        cfg.strategy = "top_k"
        cfg.top_k = num_layers - num_layers // 2
    elif strategy == "lora":
        cfg.strategy = "lora"
        cfg.lora_rank = s.lora_rank
        cfg.lora_alpha = s.lora_alpha
    else:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    return cfg


def task_data(data_dir: str) -> TaskData:
    """The SST-2 task as the regimes see it (files are read only by the cases that need data)."""
    task = get_task(TASK, data_dir or None)
    return TaskData(task, 0, HEAD_KEY, 0, None, [], "dev")


def load_encoder(name: str) -> nnx.Module:
    """The pretrained encoder alone: ``from_pretrained`` minus the tokenizer, whose HF loader
    imports torch (the memory case must not count torch in jaxtl's resident set)."""
    from jaxtl.models import hf

    path = hf.resolve(name)
    fam = hf.get_family(hf.read_config(path)["model_type"], where=str(path / "config.json"))
    cfg = fam.config_from_hf(hf.read_config(path))
    return hf.convert(fam, cfg, hf.read_tensors(path), load_lm_head=False, ignore=(), where=path)


def random_bert(hf_config: dict, seed: int) -> nnx.Module:
    """A BERT encoder of ``hf_config``'s shape with random weights and bf16 compute over fp32
    weights (the accelerator case: no checkpoint to carry, the same programs as trained ones)."""
    return models.build_encoder("bert", hf_config, rngs=nnx.Rngs(seed), dtype=jnp.bfloat16)


def build_model(
    s: Settings, strategy: str, *, tokenizer: bool = True, encoder: nnx.Module | None = None
) -> tuple[models.TransferModel, Any]:
    """(model, Pretrained or None) for ``strategy``; head (and LoRA) seeded by ``s.seed``.

    ``tokenizer=False`` loads the encoder without the tokenizer (and returns None for it);
    ``encoder`` is used as it is instead of loading ``s.model``.
    """
    if encoder is not None:
        pre, enc = None, encoder
    elif tokenizer:
        pre = models.from_pretrained(s.model)
        enc = pre.model
    else:
        pre, enc = None, load_encoder(s.model)
    head = models.ClassificationHead(enc.hidden_size, 2, "cls", None, 0.1, rngs=nnx.Rngs(s.seed))
    model = models.TransferModel(enc, {HEAD_KEY: head})
    if strategy == "lora":
        peft.apply_lora(
            model,
            rank=s.lora_rank,
            alpha=s.lora_alpha,
            attention_targets=("query", "value"),
            rngs=nnx.Rngs(s.seed + 1),
        )
    return model, pre


def params_of(model: nnx.Module) -> dict:
    return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def random_batch(vocab: int, b: int, t: int, seed: int) -> dict[str, np.ndarray]:
    """A full batch in the jaxtl layout: random tokens, no padding (every position is work)."""
    from jaxtl.data import batch as layout

    rng = np.random.default_rng(seed)
    out = layout.empty(b, t)
    out["input_ids"][:] = rng.integers(1000, vocab, (b, t), dtype=np.int32)
    out["input_ids"][:, 0] = 101  # [CLS]
    out["attention_mask"][:] = 1
    out["label"][:] = rng.integers(0, 2, b, dtype=np.int32)
    out["example_weight"][:] = 1.0
    return out


def mlm_batch(vocab: int, b: int, t: int, seed: int, *, mask_id: int, prob: float) -> dict:
    """:func:`random_batch` masked as BERT's MLM data is: each position but [CLS] is chosen with
    probability ``prob``, its id becomes the label and ``mask_id`` the input."""
    from jaxtl.data.batch import IGNORE

    out = random_batch(vocab, b, t, seed)
    chosen = np.random.default_rng(seed + 1).random((b, t)) < prob
    chosen[:, 0] = False
    out["token_labels"][:] = np.where(chosen, out["input_ids"], IGNORE)
    out["input_ids"][chosen] = mask_id
    return out


def mlm_setup(s: Settings, batch: dict[str, np.ndarray], *, label_fraction: float) -> TrainSetup:
    """jaxtl's masked-LM train step (encoder + tied MLM head, the unsupervised_sequential
    regime's ``pretrain`` stage). ``label_fraction``: the masking probability decodes the masked
    positions alone, as a run does (``TaskData.label_fraction``); 1.0 decodes every position."""
    from jaxtl.data.tasks import Task
    from jaxtl.models.lm import LM_KEY, load_lm_model

    lm = load_lm_model(s.model, seed=s.seed)
    model = models.TransferModel(lm.encoder, {LM_KEY: lm.head})
    task = Task("corpus", "lm", lambda split: [], ("train",), metrics=("perplexity",))
    td = TaskData(task, 0, LM_KEY, 0, None, [], "dev", label_fraction=label_fraction)
    return train_setup(s, "full", batch, model=model, tasks=[td])


def cost_flops(compiled: Any) -> float:
    """FLOPs XLA counts for a compiled program (cost_analysis is a dict, or a list of one)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", float("nan")))


@dataclasses.dataclass
class TrainSetup:
    """A compiled train step, its state and the batch it is timed on."""

    step: Any
    state: step_lib.TrainState
    batch: dict
    compile_s: float
    flops: float
    cpu_kernels: str  # jaxtl.runtime.compiled_cpu_kernels
    trainable_params: int
    frozen_params: int
    opt_state_bytes: int
    param_bytes: int

    def run(self) -> None:
        self.run_many(1)

    def run_many(self, n: int) -> None:
        """``n`` steps dispatched back to back, then one wait (an accelerator's steps are short
        enough that a wait per step would time the host round trip)."""
        m = None
        for _ in range(n):
            self.state, m = self.step(self.state, self.batch)
        jax.block_until_ready((self.state, m))

    def loss(self) -> float:
        """One step, returning its loss (the state advances, as in :meth:`run`)."""
        self.state, m = self.step(self.state, self.batch)
        return float(m["loss"])


def train_setup(
    s: Settings,
    strategy: str,
    batch: dict[str, np.ndarray],
    *,
    model: nnx.Module | None = None,
    total_steps: int = 1000,
    mesh: Any = None,
    tokenizer: bool = True,
    tasks: list[TaskData] | None = None,
    loss_fn: step_lib.LossFn | None = None,
    tx: Any = None,
    partitionable_rng: bool | None = None,
) -> TrainSetup:
    """Build and compile jaxtl's train step for ``strategy`` on ``batch``'s shape (``tasks``:
    what the loss switches over, SST-2 by default; ``loss_fn`` and ``tx`` replace the loss
    over them and the phase's optimizer, for variants of the step; ``partitionable_rng``, the
    dropout generator, by default the run's for this device count).

    With ``mesh`` the state and batch are placed as ``jaxtl.train.Trainer`` places them
    (parameters by their logical names, optimizer state like its parameters, batch over
    ``(data, fsdp)``), and the phase's trainable mask goes to the step as the Trainer passes it
    (frozen parameters enter as constants, so their backward work is not done).
    """
    from jaxtl import mesh as mesh_lib

    runtime.listen_to_compiles()  # as jaxtl.run does: compile stats, compiler memory handed back
    if model is None:
        model, _ = build_model(s, strategy, tokenizer=tokenizer)
    graphdef, pstate = nnx.split(model, nnx.Param)
    params = nnx.to_pure_dict(pstate)
    num_layers = partition.num_blocks(params)  # blocks: ALBERT's layers share one
    phase = partition.phases_from_config(
        optim_config(strategy, num_layers, s), params, num_layers=num_layers,
        total_steps=total_steps,
    )[0]  # fmt: skip
    loss_fn = loss_fn or objectives.switch_loss(tasks or [task_data(s.data_dir)])
    tx = tx or phase.tx
    kwargs: dict[str, Any] = {}
    if mesh is not None:
        logical = mesh_lib.logical_specs(pstate)
        p_sh = mesh_lib.param_shardings(params, logical, mesh)
        params = jax.device_put(params, p_sh)
        abstract = jax.eval_shape(tx.init, params)
        o_sh = mesh_lib.like_params_shardings(abstract, params, p_sh, mesh)
        opt = jax.jit(tx.init, out_shardings=o_sh)(params)
        rep = mesh_lib.replicated(mesh)
        state = step_lib.TrainState(
            step=jnp.zeros((), jnp.int32), params=params, opt_state=opt,
            rng=jax.random.key_data(jax.random.key(s.seed)),
        )  # fmt: skip
        shardings = step_lib.TrainState(step=rep, params=p_sh, opt_state=o_sh, rng=rep)
        state = jax.device_put(state, shardings)
        b_sh = {k: mesh_lib.batch_sharding(mesh, np.ndim(v)) for k, v in batch.items()}
        dev_batch = mesh_lib.shard_batch(batch, mesh)
        kwargs = dict(mesh=mesh, state_shardings=shardings, batch_shardings=b_sh)
    else:
        state = step_lib.init_state(params, tx, s.seed)
        dev_batch = jax.device_put(batch)
    # By default the run's dropout generator for this device count (prng_partitionable=auto).
    if partitionable_rng is None:
        partitionable_rng = runtime.partitionable_rng()
    step = step_lib.make_train_step(
        graphdef, loss_fn, tx, trainable_mask=phase.trainable_mask,
        partitionable_rng=partitionable_rng, **kwargs,
    )  # fmt: skip
    t0 = time.perf_counter()
    compiled = step.lower(state, dev_batch).compile()
    compile_s = time.perf_counter() - t0
    return TrainSetup(
        step=compiled,
        state=state,
        batch=dev_batch,
        compile_s=compile_s,
        flops=cost_flops(compiled),
        cpu_kernels=runtime.compiled_cpu_kernels(compiled),
        trainable_params=phase.plan.trainable_params,
        frozen_params=phase.plan.frozen_params,
        opt_state_bytes=_bytes(state.opt_state),
        param_bytes=_bytes(state.params),
    )


def _bytes(tree: Any) -> int:
    return int(sum(x.nbytes for x in jax.tree.leaves(tree) if hasattr(x, "nbytes")))


def per_device_bytes(tree: Any) -> int:
    """Bytes of ``tree`` held on the first device (what one device needs under FSDP)."""
    dev = jax.devices()[0]
    total = 0
    for x in jax.tree.leaves(tree):
        for sh in getattr(x, "addressable_shards", ()):
            if sh.device == dev:
                total += sh.data.nbytes
    return int(total)


@dataclasses.dataclass
class ForwardSetup:
    fn: Any
    params: Any
    batch: dict
    compile_s: float
    flops: float

    def run(self) -> None:
        jax.block_until_ready(self.fn(self.params, self.batch))


def forward_setup(model: nnx.Module, batch: dict[str, np.ndarray]) -> ForwardSetup:
    """jaxtl's eval step (``make_eval_step``) returning the encoder's last hidden state."""

    def predict(m, b):
        return m.encoder(b["input_ids"], b["attention_mask"], b["token_type_ids"]).last_hidden_state

    graphdef, pstate = nnx.split(model, nnx.Param)
    params = jax.device_put(nnx.to_pure_dict(pstate))
    dev_batch = jax.device_put(batch)
    fn = step_lib.make_eval_step(graphdef, predict)
    t0 = time.perf_counter()
    compiled = fn.lower(params, dev_batch).compile()
    compile_s = time.perf_counter() - t0
    return ForwardSetup(compiled, params, dev_batch, compile_s, cost_flops(compiled))
