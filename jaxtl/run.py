"""The run skeleton every regime shares: :func:`prepare` the run, build stages, :func:`finish` it.

    run = prepare(config, workdir, task_names, objective=..., optims=(...))
    stages = [...]                        # the regime's own part: which stages, in which order
    return finish(run, stages, "regime: dev results")

:func:`prepare` sets up the mesh, loads the encoder (with its LM head when an objective needs
one), tokenises the tasks and the objective's stream, builds the model (heads, the surgery of
every stage's strategy), applies ``model.init_from`` and takes the starting params.
:func:`finish` trains the stages with the one :class:`~jaxtl.train.Trainer`, writes
``task_counts.json`` (batches drawn per stream of the last stage), exports the encoder when
``export_dir`` is set, and prints the results table.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
from etils import epath
from flax import nnx

from jaxtl import assembly, models, report, runtime, train
from jaxtl.data.prepare import TaskData, prepare_tasks
from jaxtl.objectives import Objective

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Run:
    """Everything a regime needs to build its stages."""

    config: ml_collections.ConfigDict
    workdir: epath.Path
    mesh: jax.sharding.Mesh
    model: models.TransferModel
    tokenizer: Any
    hf_config: dict
    tasks: list[TaskData]  # the labelled tasks, indices 0..n-1
    objective: Objective | None  # its stream is task index n
    params: Any  # the starting params (pure dict): partition rules resolve against them

    @property
    def all_tasks(self) -> list[TaskData]:
        """What the loss switches over: the labelled tasks, then the objective's stream."""
        return self.tasks + ([self.objective.data] if self.objective is not None else [])


def prepare(
    config: ml_collections.ConfigDict,
    workdir: str | epath.Path,
    task_names: Sequence[str],
    *,
    objective: Objective | None = None,
    optims: Sequence[Any] = (),
    lm_head: bool = False,
    from_scratch: bool = False,
) -> Run:
    """Mesh, encoder, tasks, model, init and params of a run (see the module docstring).

    ``optims``: every stage's ``optim`` block (each strategy's surgery is applied; default the
    top-level ``config.optim``). ``lm_head``: load the encoder through the LM loader even without
    an LM objective (so ``from_scratch`` applies).
    """
    workdir = epath.Path(workdir)
    mesh = runtime.setup_mesh(config)
    lm = None
    if lm_head or (objective is not None and objective.needs_lm_head):
        lm = assembly.load_lm_model(config, from_scratch=from_scratch)
        encoder, tokenizer, hf_config = lm.encoder, lm.tokenizer, lm.hf_config
    else:
        pre = assembly.load_encoder(config)
        encoder, tokenizer, hf_config = pre.model, pre.tokenizer, pre.hf_config
    tasks = prepare_tasks(task_names, config, tokenizer)
    heads: dict[str, nnx.Module] = {}
    if objective is not None:
        objective.setup(encoder, tokenizer, tasks, config)
        objective.stream(config, tokenizer, index=len(tasks), seed=config.seed * 1000 + 999)
        heads = objective.heads(lm.head if lm is not None else None)
    model = assembly.build_model(encoder, tasks, config, extra_heads=heads, optims=optims)
    if objective is not None:
        objective.extend(model, config)
    if config.model.init_from:
        rep = assembly.init_from_checkpoint(model, config.model.init_from, workdir)
        log.info("init_from %s: %s", config.model.init_from, rep.summary())
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    return Run(config, workdir, mesh, model, tokenizer, hf_config, tasks, objective, params)


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


def finish(run: Run, stages: Sequence[train.Stage], title: str) -> dict[str, Any]:
    """Train ``stages`` on the run's model, then write, export and print (module docstring)."""
    trainer = train.Trainer(
        run.model, stages, workdir=run.workdir, mesh=run.mesh, config=train_config(run.config)
    )
    results = trainer.run()
    counts = dict(stages[-1].feed.counts) if stages else {}
    if len(counts) > 1:
        report.write_json(run.workdir / "task_counts.json", counts)
    if run.config.get("export_dir") and report.is_chief():
        export_encoder(run, run.config.export_dir)
    if report.is_chief():
        print(results_table(results, title))
        if len(counts) > 1:
            print("batches drawn per stream:", counts)
    return results


def export_encoder(run: Run, out_dir: str) -> None:
    """Save the trained encoder (the run's last checkpoint) in Hugging Face layout."""
    from jaxtl import checkpoint as ckpt_lib

    final, _ = ckpt_lib.load_params(run.workdir / "checkpoints", run.params)
    state = nnx.state(run.model, nnx.Param)
    nnx.replace_by_pure_dict(state, final)
    nnx.update(run.model, state)
    out = models.save_pretrained(
        run.model.encoder, out_dir, tokenizer=run.tokenizer, hf_config=run.hf_config
    )
    log.info("encoder exported to %s", out)


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
