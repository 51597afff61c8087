"""Building blocks every regime shares: runtime and mesh, encoder and heads, task data,
one loss/predict pair over many tasks, and running stages through the shared trainer.

A regime module composes these into stages; nothing here knows which regime is calling.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath
from flax import nnx

from jaxtl import checkpoint as ckpt_lib
from jaxtl import losses, models, paths, report, train
from jaxtl import mesh as mesh_lib
from jaxtl.data import batching, tasks, tokenize

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ runtime
def setup_mesh(config: ml_collections.ConfigDict) -> jax.sharding.Mesh:
    init_distributed(config)
    return mesh_lib.make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor)


def init_distributed(config: ml_collections.ConfigDict) -> None:
    """``jax.distributed.initialize`` when asked; must run before any other JAX call."""
    d = config.distributed
    if d.enabled and not jax.distributed.is_initialized():
        mesh_lib.maybe_initialize_distributed(
            d.coordinator or None,
            d.num_processes or None,
            d.process_id if d.process_id >= 0 else None,
        )


def compute_dtype(config: ml_collections.ConfigDict) -> Any:
    """Precision policy: params and optimizer state stay f32; compute in bf16 on GPU/TPU."""
    name = config.model.compute_dtype
    if name == "auto":
        return jnp.bfloat16 if jax.default_backend() in ("gpu", "tpu") else jnp.float32
    if name not in ("float32", "bfloat16"):
        raise ValueError(f"model.compute_dtype={name!r}: use auto, float32 or bfloat16")
    return jnp.dtype(name)


def head_key(task_name: str) -> str:
    """A parameter-path-safe key for a task's head (``glue/sst2`` -> ``glue_sst2``)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", task_name)


# ------------------------------------------------------------------------------------ data
@dataclasses.dataclass
class TaskData:
    """One task of a run, tokenised: its train iterator and its evaluation batches."""

    task: tasks.Task
    index: int  # position in the run's task list (= batch["task_id"])
    key: str  # head key
    train_size: int
    train_iter: Any  # batching.TrainBatches or None
    eval_batches: list[dict[str, np.ndarray]]
    eval_split: str


def _limit(examples: Sequence[Any], n: int) -> Sequence[Any]:
    return examples[:n] if n and n > 0 else examples


def prepare_tasks(
    names: Sequence[str],
    config: ml_collections.ConfigDict,
    tokenizer: Any,
    *,
    train_split: str = "train",
    eval_split: str = "dev",
    with_train: bool = True,
    with_eval: bool = True,
) -> list[TaskData]:
    if tokenizer is None:
        raise ValueError(f"model {config.model.name!r} has no tokenizer files; tasks need one")
    data_dir = config.data.dir or None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = []
    for i, name in enumerate(names):
        # Generated tasks have no rows to be bad; file-backed readers take the policy.
        opts = {} if name.startswith("builtin/") else {"on_bad_row": config.data.on_bad_row}
        task = tasks.get_task(name, data_dir, **opts)
        train_iter, n_train = None, 0
        if with_train:
            ex = _limit(task.load(train_split), config.data.max_train_examples)
            enc = tokenize.encode(task, ex, tokenizer, max_length=config.data.max_length, task_id=i)
            n_train = len(enc)
            train_iter = batching.TrainBatches(
                enc,
                batch_size=config.train.batch_size,
                buckets=tuple(config.data.buckets),
                seed=config.seed * 1000 + i,
                pad_id=pad_id,
                process_index=jax.process_index(),
                process_count=jax.process_count(),
            )
        ev: list[dict[str, np.ndarray]] = []
        if with_eval and eval_split in task.splits:
            ex = _limit(task.load(eval_split), config.data.max_eval_examples)
            enc = tokenize.encode(task, ex, tokenizer, max_length=config.data.max_length, task_id=i)
            ev = batching.eval_batches(
                enc,
                batch_size=config.train.eval_batch_size,
                buckets=tuple(config.data.buckets),
                pad_id=pad_id,
                process_index=jax.process_index(),
                process_count=jax.process_count(),
            )
        out.append(TaskData(task, i, head_key(task.name), n_train, train_iter, ev, eval_split))
        log.info("task %s: %d train examples, %d eval batches", task.name, n_train, len(ev))
    return out


# ------------------------------------------------------------------------------------ model
def make_head(task: tasks.Task, in_size: int, config: ml_collections.ConfigDict, rngs: nnx.Rngs):
    m = config.model
    if task.kind == "classification":
        return models.ClassificationHead(
            in_size, task.num_labels, m.pooling, m.head_hidden or None, m.dropout, rngs=rngs
        )
    if task.kind == "regression":
        return models.ClassificationHead(
            in_size, 1, m.pooling, m.head_hidden or None, m.dropout, rngs=rngs
        )
    if task.kind == "tagging":
        return models.TaggingHead(
            in_size, task.num_labels, m.tagger_bilstm or None, m.dropout, rngs=rngs
        )
    raise ValueError(f"task {task.name!r}: no head for kind {task.kind!r} in this regime")


def load_encoder(config: ml_collections.ConfigDict) -> models.Pretrained:
    return models.from_pretrained(
        config.model.name, allow_pickle=config.model.allow_pickle, dtype=compute_dtype(config)
    )


def build_model(
    encoder: nnx.Module,
    task_list: Sequence[TaskData],
    config: ml_collections.ConfigDict,
    *,
    extra_heads: dict[str, nnx.Module] | None = None,
) -> models.TransferModel:
    """Encoder + representation + one head per task. ``extra_heads`` are heads the caller built
    itself (an LM head tied to the encoder's embeddings, keyed like its ``lm``-kind task); tasks
    whose key they name get no :func:`make_head` head."""
    rngs = nnx.Rngs(config.seed)
    rep = None
    if config.model.representation != "last":
        rep = models.Representation(
            config.model.representation, encoder.num_layers, encoder.hidden_size, rngs=rngs
        )
    in_size = rep.output_size if rep is not None else encoder.hidden_size
    extra_heads = dict(extra_heads or {})
    heads = {
        td.key: make_head(td.task, in_size, config, rngs)
        for td in task_list
        if td.key not in extra_heads
    }
    heads.update(extra_heads)
    model = models.TransferModel(encoder, heads, rep)
    # Parameter-efficient strategies (lora / adapters) are model surgery before the split.
    from jaxtl import peft

    return peft.apply_from_config(model, config.optim, rngs=rngs)


def init_from_checkpoint(
    model: nnx.Module, source: str, workdir: epath.Path | None = None
) -> ckpt_lib.TransferReport:
    """Params-only initialisation from another run (different structure allowed)."""
    state = nnx.state(model, nnx.Param)
    params = nnx.to_pure_dict(state)
    new_params, rep = ckpt_lib.load_params(source, params)
    nnx.replace_by_pure_dict(state, new_params)
    nnx.update(model, state)
    if workdir is not None:
        report.write_json(epath.Path(workdir) / "transfer_report.json", rep.to_json())
    return rep


# ------------------------------------------------------------------------------------ losses
def task_branch(
    model: nnx.Module,
    td: TaskData,
    batch: dict,
    *,
    head_dropout_key: jax.Array,
    train_mode: bool,
    weight: float = 1.0,
):
    """The ``lax.switch`` branch of one task: ``f((feats, last_hidden)) -> (loss_sum, den)``.

    ``lm``-kind tasks decode the last hidden state (not the representation a frozen encoder
    hands task heads: the LM head was trained on it) with the encoder's tied embedding.
    """

    head_def, head_state = nnx.split(model.heads[td.key])
    embedding = model.encoder.tied_embedding() if td.task.kind == "lm" else None

    def f(operands):
        feats, last = operands
        # Rebuild the head inside the branch: NNX modules that run their own transforms (the
        # BiLSTM under a tagger uses nnx.scan) cannot reach Variables across lax.switch's trace.
        head = nnx.merge(head_def, jax.tree.map(jnp.asarray, head_state))
        rngs = nnx.Rngs(dropout=head_dropout_key)
        if td.task.kind == "lm":
            logits = head(last, embedding, deterministic=not train_mode, rngs=rngs)
        else:
            logits = head(feats, batch["attention_mask"], deterministic=not train_mode, rngs=rngs)
        total, den = losses.LOSSES[td.task.kind](logits, batch)
        return total * float(weight), den

    return f


def multitask_loss(task_list: Sequence[TaskData], weights: dict[str, float] | None = None):
    """One loss over many tasks: the encoder runs once, ``lax.switch`` picks the batch's head.

    One compiled program serves every task (the switch index is data), and only the chosen
    branch runs, so a head gets gradients from its own task's batches only.
    """
    weights = weights or {}

    def loss_fn(model, batch, rngs, train_mode):
        out, feats = model.features(
            batch["input_ids"],
            batch["attention_mask"],
            batch["token_type_ids"],
            deterministic=not train_mode,
            rngs=rngs,
        )

        # nnx.Rngs cannot be advanced inside a lax.switch branch (another trace level): draw
        # the heads' dropout key here and give each branch its own Rngs.
        head_dropout_key = rngs.dropout()
        branches = [
            task_branch(
                model,
                td,
                batch,
                head_dropout_key=head_dropout_key,
                train_mode=train_mode,
                weight=float(weights.get(td.task.name, 1.0)),
            )
            for td in task_list
        ]
        idx = batch["task_id"][0]
        total, den = jax.lax.switch(idx, branches, (feats, out.last_hidden_state))
        return total, {"denominator": den}

    return loss_fn


def task_predict_branch(model: nnx.Module, td: TaskData, batch: dict):
    """The eval-time ``lax.switch`` branch of one task: ``f((feats, last)) -> predictions``."""

    head_def, head_state = nnx.split(model.heads[td.key])
    embedding = model.encoder.tied_embedding() if td.task.kind == "lm" else None

    def f(operands):
        feats, last = operands
        head = nnx.merge(head_def, jax.tree.map(jnp.asarray, head_state))  # see task_branch
        if td.task.kind == "lm":
            logits = head(last, embedding)
        else:
            logits = head(feats, batch["attention_mask"])
        return losses.predictions(td.task.kind, logits, batch)

    return f


def multitask_predict(task_list: Sequence[TaskData]):
    def predict_fn(model, batch):
        out, feats = model.features(
            batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
        )
        branches = [task_predict_branch(model, td, batch) for td in task_list]
        return jax.lax.switch(batch["task_id"][0], branches, (feats, out.last_hidden_state))

    return predict_fn


def heads_active_fn(
    params: Any, task_list: Sequence[TaskData], owners: dict[str, set[int]] | None = None
):
    """Heads update only on batches of the task indices that own them; every other parameter
    always updates. A head absent from the batch keeps its params and optimizer moments as they
    are (as if it had no gradient, like PyTorch's skipped ``None`` grads).

    By default a task's head is owned by that task alone; ``owners`` ({head key: task indices})
    adds or overrides owners (consistency training trains the target heads on unlabelled batches).
    """
    owners = {td.key: {td.index} for td in task_list} | dict(owners or {})
    flat = list(paths.flatten(params))

    def active_fn(batch):
        idx = batch["task_id"][0]
        flags = {}
        for p in flat:
            parts = p.split("/")
            if parts[0] == "heads" and parts[1] in owners:
                flags[p] = jnp.any(jnp.asarray(sorted(owners[parts[1]]), jnp.int32) == idx)
            else:
                flags[p] = jnp.bool_(True)
        return paths.unflatten(flags, params)

    return active_fn


def heads_pattern(keys: Sequence[str]) -> list[str]:
    """Partition-rule regexes matching the given heads (none for no keys)."""
    return ["^heads/(" + "|".join(re.escape(k) for k in keys) + ")/"] if keys else []


def freeze_rules(
    optim: ml_collections.ConfigDict, patterns: Sequence[str], name: str
) -> ml_collections.ConfigDict:
    """A copy of ``optim`` whose first rules freeze ``patterns`` (e.g. heads the stage does not
    train: the old task's head while adapting, task heads while pretraining). Optional, since a
    head may have no parameters (GPT-2's tied CLM head)."""
    out = ml_collections.ConfigDict(optim.to_dict())
    frozen = tuple((p, {"frozen": True, "name": name, "optional": True}) for p in patterns)
    out.rules = frozen + tuple(tuple(r) for r in optim.rules)
    return out


def mixture_stage(
    name: str,
    steps: int,
    own: Sequence[TaskData],
    all_tasks: Sequence[TaskData],
    params: Any,
    config: ml_collections.ConfigDict,
    optim: ml_collections.ConfigDict,
    *,
    eval_every: int,
    weights: dict[str, float] | None = None,
    frozen_name: str = "other_tasks_heads",
) -> train.Stage:
    """A stage training the ``own`` tasks, drawn per step by ``config.mixture``, on a model
    whose heads cover ``all_tasks`` (the loss switches over all of them, so every stage of a
    run shares one program structure). Heads of other tasks are frozen in the plan."""
    from jaxtl.data import feed, mixture

    mix = mixture.Mixture(
        [td.train_size for td in own],
        scheme=config.mixture.scheme,
        temperature=config.mixture.temperature,
        seed=config.seed,
        total_steps=max(steps, 1),
    )
    others = [td.key for td in all_tasks if td.key not in {o.key for o in own}]
    return train.Stage(
        name=name,
        steps=steps,
        feed=feed.MixtureFeed(
            [td.task.name for td in own],
            [td.train_iter for td in own],
            mix.task_for_step,
            task_ids=[td.index for td in own],
        ),
        loss_fn=multitask_loss(all_tasks, weights),
        predict_fn=multitask_predict(all_tasks),
        optim=freeze_rules(optim, heads_pattern(others), frozen_name),
        eval_sets=eval_sets(own),
        eval_every=eval_every,
        active_fn=heads_active_fn(params, all_tasks),
        select="average",
    )


def eval_sets(task_list: Sequence[TaskData]) -> dict[str, train.EvalSet]:
    from jaxtl import metrics

    return {
        td.task.name: train.EvalSet(td.task, td.eval_batches, metrics.score_task)
        for td in task_list
        if td.eval_batches
    }


# ------------------------------------------------------------------------------------ running
def train_config(config: ml_collections.ConfigDict) -> train.TrainConfig:
    t = config.train
    return train.TrainConfig(
        seed=config.seed,
        log_every=t.log_every,
        checkpoint_every=config.checkpoint.every_steps,
        keep_checkpoints=config.checkpoint.keep,
        accum_steps=t.accum_steps,
        early_stop_patience=t.early_stop_patience,
        save_best=t.save_best,
        progress=t.progress,
    )


def run_stages(
    model: nnx.Module,
    stages: Sequence[train.Stage],
    config: ml_collections.ConfigDict,
    workdir: str | epath.Path,
    mesh: jax.sharding.Mesh,
) -> dict[str, Any]:
    trainer = train.Trainer(model, stages, workdir=workdir, mesh=mesh, config=train_config(config))
    return trainer.run()


def results_table(results: dict[str, dict[str, float]], title: str = "dev results") -> str:
    """A plain-text table of {task: {metric: value}} (printed at the end of a run)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("task")
    table.add_column("metrics")
    for name, res in results.items():
        table.add_row(name, "  ".join(f"{k}={v:.4f}" for k, v in res.items()))
    console = Console(width=120, record=True)
    with console.capture() as cap:
        console.print(table)
    return cap.get()
