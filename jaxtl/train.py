"""The one training loop: a run is a list of stages; every regime drives this.

A *stage* is one block of training with its data feed (a task or a mixture), its loss and predict
functions (built by the regime over the shared model), its evaluation sets, its optimisation config
(``optim``: strategy, learning rate, schedule ... — see ``jaxtl.partition``) and its step budget.
Joint regimes (multi-task, CVT) have one stage; sequential regimes (pretrain → adapt, source task →
target task, MT-DNN refinement) have several. A stage's freezing strategy may split it into
*phases* (chain-thaw, gradual unfreezing); each phase compiles the step once.

Order of initialisation, stated once: resume this workdir's latest checkpoint > whatever the regime
put in the model (``init_from`` checkpoint or HF weights) > random init.

Between stages and phases parameters carry over; the optimizer is rebuilt for the new plan and Adam
moments of parameters that stay trainable carry over inside a stage (``partition.carry_over``),
while a new stage starts from fresh moments (a new task and a new schedule: stale moments from a
different loss would only bias the first updates).

Each step's dropout key is ``fold_in(seed key, global step)``, the data feeds restore their exact
position and the mixture is a pure function of the step, so a resumed run continues bit-identically.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import nnx
from jax.experimental import multihost_utils

from jaxtl import checkpoint as ckpt_lib
from jaxtl import mesh as mesh_lib
from jaxtl import partition, report
from jaxtl import step as step_lib

log = logging.getLogger(__name__)


class Feed(Protocol):
    """A training data stream: this process's rows of each global batch, resumable."""

    def next_batch(self, step: int) -> dict[str, np.ndarray]: ...

    def state(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...

    def task_of(self, batch: dict[str, np.ndarray]) -> str: ...


@dataclasses.dataclass
class EvalSet:
    """One task's evaluation split as fixed-shape batches (this process's rows)."""

    task: Any  # jaxtl.data Task: name, metrics, main_metric, label_names
    batches: list[dict[str, np.ndarray]]
    score: Callable[[Any, list[dict], list[dict]], dict[str, float]]  # (task, outputs, batches)


@dataclasses.dataclass
class Stage:
    name: str
    steps: int
    feed: Feed
    loss_fn: step_lib.LossFn
    predict_fn: step_lib.PredictFn
    optim: Any  # ml_collections.ConfigDict, see partition.default_optim_config()
    eval_sets: dict[str, EvalSet] = dataclasses.field(default_factory=dict)
    eval_every: int = 0  # 0 = only at the end of the stage
    active_fn: step_lib.ActiveFn | None = None
    # The score that picks the stage's best checkpoint: "average" (of each task's main metric)
    # or a task name (that task's main metric).
    select: str = "average"


@dataclasses.dataclass
class TrainConfig:
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 0  # 0 = only at stage ends
    keep_checkpoints: int = 2
    accum_steps: int = 1
    early_stop_patience: int = 0  # evaluations without improvement before a stage stops; 0 = off
    save_best: bool = True
    progress: bool = True


class NonFiniteLoss(RuntimeError):
    pass


def _num_layers(model: nnx.Module) -> int:
    enc = getattr(model, "encoder", model)
    return int(getattr(enc, "num_layers", 0))


# Metrics where smaller is better; everything else (accuracy, F1, correlations) grows.
LOWER_IS_BETTER = frozenset({"perplexity", "loss"})


def _average(results: dict[str, dict[str, float]], tasks: dict[str, Any]) -> float:
    """GLUE-style mean of each task's main metric (lower-is-better metrics stay out of it)."""
    vals = []
    for name, res in results.items():
        main = tasks[name].main_metric if name in tasks else ""
        if main in res and main not in LOWER_IS_BETTER:
            vals.append(float(res[main]))
    return float(np.mean(vals)) if vals else float("nan")


def _oriented(metric: str, value: float) -> float:
    return -float(value) if metric in LOWER_IS_BETTER else float(value)


class Trainer:
    """Runs stages on one model; owns the mesh, state, checkpoints and the workdir's files."""

    def __init__(
        self,
        model: nnx.Module,
        stages: Sequence[Stage],
        *,
        workdir: str | epath.Path,
        mesh: jax.sharding.Mesh,
        config: TrainConfig | None = None,
    ):
        self.model = model
        self.stages = list(stages)
        self.workdir = epath.Path(workdir)
        self.mesh = mesh
        self.cfg = config or TrainConfig()
        self.graphdef, params_state = nnx.split(model, nnx.Param)
        rest = nnx.state(model, nnx.Not(nnx.Param))
        if jax.tree.leaves(rest):
            raise ValueError("models must hold only nnx.Param state (dropout keys come per call)")
        self.logical = mesh_lib.logical_specs(params_state)
        host_params = nnx.to_pure_dict(params_state)
        self.param_shardings = mesh_lib.param_shardings(host_params, self.logical, mesh)
        self.params = jax.device_put(host_params, self.param_shardings)
        self.train_counter = step_lib.CompileCounter()
        self.eval_counter = step_lib.CompileCounter()
        self.metrics = report.MetricsLog(self.workdir)
        self.checkpointer = ckpt_lib.Checkpointer(
            self.workdir / "checkpoints", max_to_keep=self.cfg.keep_checkpoints
        )
        self.plans: list[dict[str, Any]] = []
        plan_file = self.workdir / "plan.json"
        if plan_file.exists():
            import json

            self.plans = json.loads(plan_file.read_text()).get("phases", [])
        self.results: dict[str, dict[str, float]] = {}
        self._eval_steps: dict[int, Any] = {}
        self.best: dict[str, dict[str, Any]] = {}

    # ---------------------------------------------------------------- sharding helpers
    def _state_shardings(self, opt_state_like: Any) -> step_lib.TrainState:
        rep = mesh_lib.replicated(self.mesh)
        return step_lib.TrainState(
            step=rep,
            params=self.param_shardings,
            opt_state=mesh_lib.like_params_shardings(
                opt_state_like, self.params, self.param_shardings, self.mesh
            ),
            rng=rep,
        )

    def _batch_shardings(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        return {k: mesh_lib.batch_sharding(self.mesh, np.ndim(v)) for k, v in batch.items()}

    def _init_opt(self, tx, params):
        abstract = jax.eval_shape(tx.init, params)
        shardings = mesh_lib.like_params_shardings(
            abstract, self.params, self.param_shardings, self.mesh
        )
        return jax.jit(tx.init, out_shardings=shardings)(params)

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, stage: Stage, step: int) -> dict[str, dict[str, float]]:
        if not stage.eval_sets:
            return {}
        eval_step = self._eval_steps.get(id(stage))
        if eval_step is None:  # one jitted function per stage: no recompiles per evaluation
            eval_step = step_lib.make_eval_step(
                self.graphdef, stage.predict_fn, mesh=self.mesh, counter=self.eval_counter
            )
            self._eval_steps[id(stage)] = eval_step
        results = {}
        for name, es in stage.eval_sets.items():
            outputs, full_batches = [], []
            for b in es.batches:
                gb = mesh_lib.shard_batch(b, self.mesh)
                out = eval_step(self.params, gb)
                if jax.process_count() > 1:
                    out = multihost_utils.process_allgather(out, tiled=True)
                    b = multihost_utils.process_allgather(gb, tiled=True)
                outputs.append(jax.tree.map(np.asarray, out))
                full_batches.append(jax.tree.map(np.asarray, b))
            res = es.score(es.task, outputs, full_batches)
            results[name] = {k: float(v) for k, v in res.items()}
            self.metrics.write(step, "dev", name, results[name], stage=stage.name)
        if len(results) > 1:
            avg = _average(results, {n: es.task for n, es in stage.eval_sets.items()})
            self.metrics.write(step, "dev", "average", {"score": avg}, stage=stage.name)
        return results

    def _selection_score(self, stage: Stage, results: dict[str, dict[str, float]]) -> float:
        """Higher is better: the mean over the selected tasks of their oriented main metric."""
        names = list(results) if stage.select == "average" else [stage.select]
        vals = []
        for name in names:
            main = stage.eval_sets[name].task.main_metric
            if main in results.get(name, {}):
                vals.append(_oriented(main, results[name][main]))
        return float(np.mean(vals)) if vals else float("nan")

    def _save_best(self, stage_idx: int, stage: Stage, step: int, results) -> bool:
        """Keep the best params of the stage (by its selection score) and per-task bests."""
        improved = False
        score = self._selection_score(stage, results)
        key = f"{stage_idx}:{stage.name}"
        prev = self.best.get(key)
        if prev is None or score > prev["score"] or np.isnan(prev["score"]):
            self.best[key] = {"score": score, "step": step, "results": results}
            improved = True
            if self.cfg.save_best:
                ckpt_lib.save_params(self.workdir / "best" / stage.name, step, self.params)
        for name, res in results.items():
            main = stage.eval_sets[name].task.main_metric
            tkey = f"{key}:{name}"
            if main not in res:
                continue
            tscore = _oriented(main, res[main])
            if tkey not in self.best or tscore > self.best[tkey]["score"]:
                self.best[tkey] = {"score": tscore, "step": step, "results": res}
                if self.cfg.save_best and len(results) > 1:
                    ckpt_lib.save_params(
                        self.workdir / "best" / f"{stage.name}-{name}", step, self.params
                    )
        return improved

    # ---------------------------------------------------------------- the loop
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        total = sum(s.steps for s in self.stages)
        resume_step = self.checkpointer.latest_step()
        meta: dict[str, Any] | None = None
        if resume_step is not None:
            self.metrics.truncate_after(resume_step)
            log.info("resuming %s from step %d", self.workdir, resume_step)

        global_step = 0
        state: step_lib.TrainState | None = None
        rng = jax.random.key_data(jax.random.key(cfg.seed))
        pbar = None
        if cfg.progress and report.is_chief():
            from tqdm.auto import tqdm

            # disable=None: a bar on a terminal, none in log files and CI output
            pbar = tqdm(total=total, desc="train", dynamic_ncols=True, disable=None)

        for si, stage in enumerate(self.stages):
            stage_start = global_step
            stage_end = global_step + stage.steps
            if resume_step is not None and resume_step > stage_end:
                global_step = stage_end  # finished before the interruption
                if pbar:
                    pbar.update(stage.steps)
                continue
            phases = partition.phases_from_config(
                stage.optim,
                self.params,
                num_layers=_num_layers(self.model),
                total_steps=stage.steps,
            )
            prev_opt = None
            stage_results: dict[str, dict[str, float]] = {}
            evals_since_best = 0
            stopped_early = False
            for phase in phases:
                p_start = stage_start + phase.start_step
                p_end = p_start + phase.steps
                self._record_plan(stage, si, phase, p_start)
                # A checkpoint at step s belongs to the phase with p_start < s <= p_end.
                if resume_step is not None and resume_step > p_end:
                    global_step = p_end
                    if pbar:
                        pbar.update(phase.steps)
                    continue
                opt_state = self._init_opt(phase.tx, self.params)
                if prev_opt is not None:
                    opt_state = partition.carry_over(prev_opt, opt_state)
                state = step_lib.TrainState(
                    step=jnp.asarray(global_step, jnp.int32),
                    params=self.params,
                    opt_state=opt_state,
                    # the previous state's buffers were donated to the step: take its live copy
                    rng=rng if state is None else state.rng,
                )
                shardings = self._state_shardings(state.opt_state)
                state = jax.device_put(state, shardings)
                if resume_step is not None:
                    # The checkpoint falls inside this phase: restore everything from it.
                    state, meta = self.checkpointer.restore(resume_step, state)
                    stage.feed.restore(meta["feed"])
                    self.best = meta.get("best", {})
                    self.results = meta.get("results", {})
                    global_step = int(state.step)
                    if pbar:
                        pbar.update(global_step - pbar.n)
                    resume_step = None
                train_step = None
                bad_since = None
                last_log = time.time()
                while global_step < p_end:
                    batch = stage.feed.next_batch(global_step)
                    if train_step is None:
                        train_step = step_lib.make_train_step(
                            self.graphdef,
                            stage.loss_fn,
                            phase.tx,
                            accum_steps=cfg.accum_steps,
                            active_fn=stage.active_fn,
                            trainable_mask=phase.trainable_mask,
                            mesh=self.mesh,
                            state_shardings=shardings,
                            batch_shardings=self._batch_shardings(batch),
                            counter=self.train_counter,
                        )
                    task = stage.feed.task_of(batch)
                    state, m = train_step(state, mesh_lib.shard_batch(batch, self.mesh))
                    global_step += 1
                    self.params = state.params
                    if pbar:
                        pbar.update(1)
                    log_now = global_step % cfg.log_every == 0 or global_step == p_end
                    if log_now:
                        m = jax.device_get(m)
                        if float(m["finite"]) < 1.0:
                            bad_since = global_step
                        vals = {k: float(v) for k, v in m.items() if k not in ("finite",)}
                        vals["lr"] = float(phase.schedule(global_step - p_start))
                        dt = time.time() - last_log
                        last_log = time.time()
                        vals["steps_per_sec"] = cfg.log_every / max(dt, 1e-9)
                        self.metrics.write(global_step, "train", task, vals, stage=stage.name)
                        if pbar:
                            pbar.set_postfix(loss=f"{vals['loss']:.4f}", task=task)
                    else:
                        # Cheap on-device check every step; a non-finite step is a no-op in
                        # the step itself, so the state stays the last good one.
                        if float(m["finite"]) < 1.0:
                            bad_since = global_step
                    if bad_since is not None:
                        last = self.checkpointer.latest_step()
                        raise NonFiniteLoss(
                            f"stage {stage.name!r}: non-finite loss or gradient at step "
                            f"{bad_since} (last good checkpoint: step {last}, in "
                            f"{self.workdir / 'checkpoints'}); lower optim.lr or check the data"
                        )
                    evaluate_now = (
                        stage.eval_every and (global_step - stage_start) % stage.eval_every == 0
                    )
                    if evaluate_now and global_step < stage_end:
                        stage_results = self.evaluate(stage, global_step)
                        if stage_results:
                            if self._save_best(si, stage, global_step, stage_results):
                                evals_since_best = 0
                            else:
                                evals_since_best += 1
                    if cfg.checkpoint_every and global_step % cfg.checkpoint_every == 0:
                        self._checkpoint(global_step, si, stage, state)
                    if cfg.early_stop_patience and evals_since_best >= cfg.early_stop_patience:
                        log.info("stage %s: early stop at step %d", stage.name, global_step)
                        stopped_early = True
                        break
                prev_opt = state.opt_state
                if stopped_early:
                    break
            # End of stage: final evaluation and a checkpoint.
            if stopped_early:
                global_step = stage_end
                if state is not None:
                    state = state.replace(step=jnp.asarray(global_step, jnp.int32))
            stage_results = self.evaluate(stage, global_step)
            if stage_results:
                self._save_best(si, stage, global_step, stage_results)
                for name, res in stage_results.items():
                    self.results[name] = res
            if state is not None:
                self._checkpoint(global_step, si, stage, state)
            log.info(
                "stage %s done at step %d: %d train compilation(s), %d eval compilation(s)",
                stage.name,
                global_step,
                self.train_counter.count,
                self.eval_counter.count,
            )
        if pbar:
            pbar.close()
        return self._finish()

    def _checkpoint(self, step: int, si: int, stage: Stage, state) -> None:
        if self.checkpointer.latest_step() == step:
            return  # already saved at this step (checkpoint_every landed on a stage end)
        meta = {
            "stage": si,
            "stage_name": stage.name,
            "feed": stage.feed.state(),
            "best": self.best,
            "results": self.results,  # earlier stages' final results survive a resume
        }
        self.checkpointer.save(step, state, meta)

    def _record_plan(self, stage: Stage, si: int, phase, start: int) -> None:
        entry = {
            "stage": stage.name,
            "stage_index": si,
            "phase": phase.name,
            "start_step": start,
            "steps": phase.steps,
        }
        entry.update(phase.plan.to_json())
        entry.setdefault("trainable_params", phase.plan.trainable_params)
        entry.setdefault("total_params", phase.plan.trainable_params + phase.plan.frozen_params)
        self.plans = [
            p for p in self.plans if not (p["stage_index"] == si and p["phase"] == phase.name)
        ]
        self.plans.append(entry)
        report.write_json(self.workdir / "plan.json", {"phases": self.plans})
        log.info("stage %s phase %s: %s", stage.name, phase.name, phase.plan.summary())

    def _finish(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.results)
        # The average is over the tasks the run ends on (a sequential run's targets, not its
        # source tasks), GLUE-style, when there are at least two to average.
        tasks = {n: es.task for n, es in self.stages[-1].eval_sets.items()}
        final = {n: r for n, r in self.results.items() if n in tasks}
        scored = [n for n in final if tasks[n].main_metric not in LOWER_IS_BETTER]
        if len(scored) > 1:
            out["average"] = {"score": _average(final, tasks)}
        report.write_json(self.workdir / "results.json", out)
        report.plot_run(self.workdir, self.metrics.records, self.plans)
        self.metrics.write(
            int(sum(s.steps for s in self.stages)),
            "run",
            "compilations",
            {"train": self.train_counter.count, "eval": self.eval_counter.count},
        )
        self.metrics.close()
        self.checkpointer.close()
        return out
