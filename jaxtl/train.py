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

The loop is :meth:`Trainer.run` → :meth:`Trainer._run_stage` → :meth:`Trainer._run_phase`; after
every step the hooks in ``Trainer.after_step`` run in order (log, evaluation and best-checkpoint
selection, periodic checkpoint, early stop); research code may append its own (a hook gets a
:class:`StepEvent` and may set ``event.stop``). A step's non-finite flag is read once the next
step is queued, or before anything is evaluated or saved, whichever comes first: reading it at
once would make the host wait for every step, and an accelerator would sit idle while the host
builds and dispatches the next one.

Each step's dropout key is ``fold_in(seed key, global step)``, the data feeds restore their exact
position and the mixture is a pure function of the step, so a resumed run continues bit-identically.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
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
from jaxtl import fileio, partition, report, runtime, selection
from jaxtl import mesh as mesh_lib
from jaxtl import step as step_lib
from jaxtl.strategy import Strategy

log = logging.getLogger(__name__)
# Without a terminal (a log file, a batch job) the progress bar is off; a line at most this
# often says where training is instead, and each evaluation's scores.
PROGRESS_LINE_EVERY_S = 30.0


class Feed(Protocol):
    """A training data stream: this process's rows of each global batch, resumable."""

    def next_batch(self, step: int) -> dict[str, np.ndarray]: ...

    def state(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...

    def task_of(self, batch: dict[str, np.ndarray]) -> str: ...


class Features(Protocol):
    """A stage's frozen-encoder features (:class:`jaxtl.features.FeatureCache`): prepared with
    the params the stage starts from, then attached to every batch its steps take."""

    def prepare(self, graphdef: Any, params: Any, workdir: Any) -> None: ...

    def attach(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


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
    features: Features | None = None  # cached encoder features (a frozen encoder), if any


@dataclasses.dataclass
class TrainConfig:
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 0  # 0 = only at stage ends
    keep_checkpoints: int = 2
    async_checkpoints: bool = False  # write checkpoints in the background (checkpoint.async_save)
    async_best: bool = False  # write best params in the background (checkpoint.async_best)
    accum_steps: int = 1
    early_stop_patience: int = 0  # evaluations without improvement before a stage stops; 0 = off
    save_best: bool = True
    restore_best: bool = False  # a later stage starts from the previous stage's best params
    progress: bool = True
    partitionable_rng: bool = True  # jaxtl.runtime.partitionable_rng


class NonFiniteLoss(RuntimeError):
    pass


class Preempted(RuntimeError):
    """SIGTERM / SIGINT stopped the run after a checkpoint at a step boundary; running the same
    command again resumes from it (launch.py exits 0 with this message)."""


@dataclasses.dataclass
class StepEvent:
    """What an after-step hook sees: the step just taken and where it sits."""

    stage_index: int
    stage: Stage
    phase: partition.Phase
    stage_start: int
    stage_end: int
    phase_start: int
    phase_end: int
    step: int  # global steps done
    state: step_lib.TrainState
    metrics: dict[str, Any]  # on device; hooks fetch what they need
    task: str
    stop: bool = False  # set by a hook to end the stage after this step


Hook = Callable[[StepEvent], None]


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
        self.workdir = fileio.workdir(workdir)
        self.mesh = mesh
        self.cfg = config or TrainConfig()
        self.graphdef, params_state = nnx.split(model, nnx.Param)
        rest = nnx.state(model, nnx.Not(nnx.Param))
        if jax.tree.leaves(rest):
            raise ValueError("models must hold only nnx.Param state (dropout keys come per call)")
        self.logical = mesh_lib.logical_specs(params_state)
        host_params = nnx.to_pure_dict(params_state)
        self.param_shardings = mesh_lib.param_shardings(host_params, self.logical, mesh)
        # Outputs of predictions made with the current params, by (stage, batches) identity:
        # the run's predictions for the selected model reuse the stage-end evaluation's when the
        # selected params are the last ones (a dev split is not run through the model twice).
        # Emptied whenever ``params`` is assigned.
        self._outputs_now: dict[tuple[int, int, bool], tuple[Any, list[dict], list[dict]]] = {}
        self.params = jax.device_put(host_params, self.param_shardings)
        self.train_counter = step_lib.CompileCounter()
        self.eval_counter = step_lib.CompileCounter()
        # Every stage's phases are planned here, once, so a plan the model cannot take (more
        # optim.phase_steps than the strategy has phases, a stage too short for them) stops
        # before the run writes its logs and checkpoints. A plan reads the params' paths and
        # shapes only, which no stage changes.
        self.phases = [
            Strategy.of(stage.optim).phases(host_params, total_steps=stage.steps)
            for stage in self.stages
        ]
        self.metrics = report.MetricsLog(self.workdir)
        self.checkpointer = ckpt_lib.Checkpointer(
            self.workdir / "checkpoints",
            max_to_keep=self.cfg.keep_checkpoints,
            async_save=self.cfg.async_checkpoints,
        )
        self.best_writer = ckpt_lib.ParamsWriter(background=self.cfg.async_best)
        self.plans: list[dict[str, Any]] = []
        plan_file = self.workdir / "plan.json"
        if plan_file.exists():
            import json

            try:
                self.plans = json.loads(plan_file.read_text()).get("phases", [])
            except json.JSONDecodeError:  # torn by a kill: rebuilt phase by phase as they run
                log.warning("%s is torn; it is rewritten as the stages run", plan_file)
        self.results: dict[str, dict[str, float]] = {}
        self._eval_steps: dict[int, Any] = {}
        self.tracker = selection.BestTracker()
        self.after_step: list[Hook] = [
            self._log_hook,
            self._eval_hook,
            self._checkpoint_hook,
            self._early_stop_hook,
            self._signal_hook,
        ]
        self._signal: int | None = None  # a SIGTERM / SIGINT received, handled at the step end
        # The last step whose finite flag is not read yet: (step, stage name, flag on device).
        self._unchecked: tuple[int, str, Any] | None = None
        # Where the run is: global step, live state, the checkpoint still to resume from.
        self._step = 0
        self._state: step_lib.TrainState | None = None
        self._resume: int | None = None
        self._pbar: Any = None
        self._last_line = 0.0
        self._evals_since_best = 0
        self._last_log = time.time()
        # task -> (step, metrics on device, stage name, phase, phase start) of that task's
        # latest step since the last log row (see _log_hook)
        self._unlogged: dict[str, tuple[int, Any, str, partition.Phase, int]] = {}
        self._starts_from = "the initial params"  # what the next stage starts from (plan.json)
        self._compiles_before = runtime.listen_to_compiles().snapshot()

    @property
    def best(self) -> dict[str, dict[str, Any]]:
        return self.tracker.best

    # ---------------------------------------------------------------- sharding and state
    def _state_shardings(self, opt_state_like: Any) -> Any:
        """A TrainState-shaped tree of shardings (for jit's in/out_shardings)."""
        rep: Any = mesh_lib.replicated(self.mesh)
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

    def _build_state(self, phase: partition.Phase, prev_opt: Any):
        """The phase's sharded train state (the one place a TrainState is made): fresh optimizer
        state for its plan, Adam moments carried over from the previous phase of the stage."""
        opt_state = self._init_opt(phase.tx, self.params)
        if prev_opt is not None:
            opt_state = partition.carry_over(prev_opt, opt_state)
        if self._state is None:
            rng = jax.random.key_data(jax.random.key(self.cfg.seed))
        else:  # the previous state's buffers were donated to the step: take its live copy
            rng = self._state.rng
        state = step_lib.TrainState(
            step=jnp.asarray(self._step, jnp.int32),
            params=self.params,
            opt_state=opt_state,
            rng=rng,
        )
        shardings = self._state_shardings(state.opt_state)
        return jax.device_put(state, shardings), shardings

    # ---------------------------------------------------------------- evaluation
    def _eval_step(self, stage: Stage):
        eval_step = self._eval_steps.get(id(stage))
        if eval_step is None:  # one jitted function per stage: no recompiles per evaluation
            eval_step = step_lib.make_eval_step(
                self.graphdef, stage.predict_fn, mesh=self.mesh, counter=self.eval_counter
            )
            self._eval_steps[id(stage)] = eval_step
        return eval_step

    @property
    def params(self) -> Any:
        """The current parameters (device arrays, placed by ``param_shardings``)."""
        return self._params

    @params.setter
    def params(self, value: Any) -> None:
        self._params = value
        self._outputs_now.clear()

    def predict(
        self, stage: Stage, batches: Sequence[dict], params: Any = None, cached: bool = True
    ):
        """Host outputs of ``stage.predict_fn`` on ``batches`` (all processes' rows, gathered)
        and the matching full batches; ``params`` default to the current ones. With the current
        params, a second call on the same ``batches`` list returns the first call's outputs.
        ``cached=False``: a feature-cached stage runs its frozen encoder on these batches
        (inputs the cache does not hold, e.g. windows of long texts) instead of the cache."""
        features = stage.features if cached else None
        current = params is None or params is self.params
        key = (id(stage), id(batches), cached)
        hit = self._outputs_now.get(key) if current else None
        if hit is not None and hit[0] is batches:  # (held, so its id is not another list's)
            return hit[1], hit[2]
        eval_step = self._eval_step(stage)
        params = self.params if params is None else params
        if features is not None:  # no-op once the stage has prepared it
            features.prepare(self.graphdef, params, self.workdir)
        outputs, full_batches = [], []
        for b in batches:
            # The cached features go to the step only; the batch returned is the one given.
            gb = mesh_lib.shard_batch(b if features is None else features.attach(b), self.mesh)
            out = eval_step(params, gb)
            if jax.process_count() > 1:
                out = multihost_utils.process_allgather(out, tiled=True)
                b = multihost_utils.process_allgather(gb, tiled=True)
            outputs.append(jax.tree.map(np.asarray, out))
            full_batches.append(jax.tree.map(np.asarray, b))
        if current:
            self._outputs_now[key] = (batches, outputs, full_batches)
        return outputs, full_batches

    def evaluate(self, stage: Stage, step: int) -> dict[str, dict[str, float]]:
        self._check_finite()
        results = {}
        for name, es in stage.eval_sets.items():
            outputs, full_batches = self.predict(stage, es.batches)
            res = es.score(es.task, outputs, full_batches)
            results[name] = {k: float(v) for k, v in res.items()}
            self.metrics.write(step, "dev", name, results[name], stage=stage.name)
            if self._lines:
                log.info("step %d (%s) dev %s: %s", step, stage.name, name,
                         "  ".join(f"{k}={v:.4f}" for k, v in results[name].items()))  # fmt: skip
        if len(results) > 1:
            avg = selection.average(results, {n: es.task for n, es in stage.eval_sets.items()})
            self.metrics.write(step, "dev", "average", {"score": avg}, stage=stage.name)
        return results

    def selected(self, si: int, stage: Stage) -> tuple[Any, dict[str, Any]]:
        """The stage's selected params (its best evaluation, from ``best/<stage>``; the last
        params when no best was kept) and a record of the choice for ``selection.json``."""
        best = self.tracker.best.get(f"{si}:{stage.name}")
        where = self._best_folder(stage, None)
        info: dict[str, Any] = {"stage": stage.name, "select": stage.select}
        self.best_writer.wait_until_finished()
        if best is None or not self.cfg.save_best or not where.exists():
            info.update(params="last", step=self._step, reason="no best params kept")
            return self.params, info
        info.update(params=f"best/{stage.name}", step=int(best["step"]),
                    score=float(best["score"]), results=best["results"])  # fmt: skip
        if info["step"] == self._step:  # the best are the params in memory: no need to read them
            return self.params, info
        host, _ = ckpt_lib.load_params(where, jax.device_get(self.params))
        return jax.device_put(host, self.param_shardings), info

    def _save_best(self, stage_idx: int, stage: Stage, step: int, results) -> bool:
        """Track the stage's best evaluation (and per-task bests); save their params."""
        improved_tasks: list[str | None] = []
        tasks = {n: es.task for n, es in stage.eval_sets.items()}
        key = f"{stage_idx}:{stage.name}"
        improved = self.tracker.update(key, stage.select, results, tasks, step,
                                       improved_tasks.append)  # fmt: skip
        if self.cfg.save_best:  # this evaluation's params, written once; the other folders link
            folders = [self._best_folder(stage, task) for task in improved_tasks]
            self.best_writer.write(step, self.params, folders)
        return improved

    def _best_folder(self, stage: Stage, task: str | None) -> epath.Path:
        return self.workdir / "best" / (stage.name if task is None else f"{stage.name}-{task}")

    def _recover_best(self, step: int) -> None:
        """Rewrite, from the restored params, the bests the evaluation at checkpoint ``step``
        set. Their write may still have been in flight when the checkpoint was saved (it waits
        only for earlier ones) and then cut short; the evaluation is not replayed on resume.
        A folder already holding that step, or a later one (replayed as the run goes on), is
        left alone."""
        if not self.cfg.save_best:
            return
        missing = []
        for si, stage in enumerate(self.stages):
            key = f"{si}:{stage.name}"
            tasks = [None] + (list(stage.eval_sets) if len(stage.eval_sets) > 1 else [])
            for task in tasks:
                entry = self.tracker.best.get(key if task is None else f"{key}:{task}")
                if entry is None or int(entry["step"]) != step:
                    continue
                where = self._best_folder(stage, task)
                if not any(s >= step for s in ckpt_lib.saved_params_steps(where)):
                    missing.append(where)
        if missing:
            assert self._state is not None
            log.warning("rewriting the best params of step %d, cut short before the run stopped, "
                        "to %s", step, ", ".join(str(m) for m in missing))  # fmt: skip
            self.best_writer.write(step, self._state.params, missing)
            self.best_writer.wait_until_finished()

    # ---------------------------------------------------------------- the loop
    def run(self) -> dict[str, Any]:
        self._resume = self.checkpointer.latest_good_step()
        if self._resume is not None:
            self.metrics.truncate_after(self._resume)
            log.info("resuming %s from step %d", self.workdir, self._resume)
        if self.cfg.progress and report.is_chief():
            from tqdm.auto import tqdm

            # disable=None: a bar on a terminal, none in log files and CI output
            total = sum(s.steps for s in self.stages)
            self._pbar = tqdm(total=total, desc="train", dynamic_ncols=True, disable=None)
        previous = self._catch_signals()
        try:
            for si, stage in enumerate(self.stages):
                self._run_stage(si, stage)
        except BaseException:
            self._settle_checkpoint()
            raise
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if self._pbar:
                self._pbar.close()
        return self._finish()

    @property
    def _lines(self) -> bool:
        """Progress as log lines: progress asked for, but no terminal for its bar."""
        return self._pbar is not None and bool(self._pbar.disable)

    def _settle_checkpoint(self) -> None:
        """A run stopping on an error lets the checkpoint and best params in flight reach the
        disk (as synchronous saves would have left them); their own failure is logged, not
        raised over the error that stopped the run."""
        for what, wait in (("checkpoint", self.checkpointer.wait_until_finished),
                           ("best params", self.best_writer.wait_until_finished)):  # fmt: skip
            try:
                wait()
            except Exception as e:
                log.error("the %s being written when the run stopped failed: %s: %s",
                          what, type(e).__name__, e)  # fmt: skip

    def _catch_signals(self) -> dict[int, Any]:
        """SIGTERM (a preempted VM) and SIGINT (Ctrl-C) end the run at the next step boundary,
        after a checkpoint; a second Ctrl-C stops at once."""
        if threading.current_thread() is not threading.main_thread():
            return {}  # signal handlers can only be set from the main thread

        def handler(signum: int, frame: Any) -> None:
            if self._signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._signal = signum
            log.warning("%s received: checkpointing at the end of this step, then stopping",
                        signal.Signals(signum).name)  # fmt: skip

        return {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}

    def _advance(self, to_step: int, steps: int) -> None:
        """Skip work finished before the interruption being resumed."""
        self._step = to_step
        if self._pbar:
            self._pbar.update(steps)

    def _run_stage(self, si: int, stage: Stage) -> None:
        start, end = self._step, self._step + stage.steps
        if self._resume is not None and self._resume > end:
            return self._advance(end, stage.steps)  # finished before the interruption
        self._evals_since_best = 0
        prev_opt, stopped = None, False
        for phase in self.phases[si]:
            outcome = self._run_phase(si, stage, phase, start, end, prev_opt)
            if outcome == "skipped":
                continue
            assert self._state is not None  # the phase ran, so it built a state
            prev_opt = self._state.opt_state
            if outcome == "stopped":
                stopped = True
                break
        if stopped:  # the stage's remaining steps are not taken; the step count jumps
            self._step = end
            if self._state is not None:
                self._state = self._state.replace(step=jnp.asarray(end, jnp.int32))
        self._end_stage(si, stage)

    def _run_phase(self, si, stage, phase, stage_start, stage_end, prev_opt) -> str:
        p_start = stage_start + phase.start_step
        p_end = p_start + phase.steps
        self._record_plan(stage, si, phase, p_start)
        # A checkpoint at step s belongs to the phase with p_start < s <= p_end.
        if self._resume is not None and self._resume > p_end:
            self._advance(p_end, phase.steps)
            return "skipped"
        self._state, shardings = self._build_state(phase, prev_opt)
        if self._resume is not None:
            self._restore(stage, stage_end)
        if stage.features is not None:  # with the params this phase really starts from
            stage.features.prepare(self.graphdef, self._state.params, self.workdir)
        train_step = None
        self._last_log = time.time()
        self._unlogged = {}
        outcome = "done"
        while self._step < p_end:
            batch = stage.feed.next_batch(self._step)
            if stage.features is not None:
                batch = stage.features.attach(batch)
            if train_step is None:
                train_step = step_lib.make_train_step(
                    self.graphdef,
                    stage.loss_fn,
                    phase.tx,
                    accum_steps=self.cfg.accum_steps,
                    active_fn=stage.active_fn,
                    trainable_mask=phase.trainable_mask,
                    mesh=self.mesh,
                    partitionable_rng=self.cfg.partitionable_rng,
                    state_shardings=shardings,
                    batch_shardings=self._batch_shardings(batch),
                    counter=self.train_counter,
                )
            task = stage.feed.task_of(batch)
            self._state, m = train_step(self._state, mesh_lib.shard_batch(batch, self.mesh))
            # The previous step's flag: this step is queued behind it, so the device stays busy.
            self._check_finite()
            self._step += 1
            self._unchecked = (self._step, stage.name, m["finite"])
            self.params = self._state.params
            if self._pbar:
                self._pbar.update(1)
            event = StepEvent(si, stage, phase, stage_start, stage_end, p_start, p_end,
                              self._step, self._state, m, task)  # fmt: skip
            for hook in self.after_step:
                hook(event)
            if event.stop:
                outcome = "stopped"
                break
        self._check_finite()  # the phase's last step
        return outcome

    def _restore(self, stage: Stage, stage_end: int) -> None:
        """The checkpoint being resumed falls inside this phase: restore everything from it."""
        assert self._resume is not None and self._state is not None
        self._state, meta = self.checkpointer.restore(self._resume, self._state)
        # What the phase evaluates and the next phase or stage starts from: a checkpoint at the
        # phase's last step takes no step that would set them.
        self.params = self._state.params
        if self._resume == stage_end:  # the stage's end evaluation is replayed: recorded once
            end, name = stage_end, stage.name
            self.metrics.drop(lambda r: r["step"] == end and r["split"] == "dev"
                              and r.get("stage") == name)  # fmt: skip
        stage.feed.restore(meta["feed"])
        self.tracker.best = meta.get("best", {})
        self._recover_best(self._resume)
        self._evals_since_best = int(meta.get("evals_since_best", 0))
        self.results = meta.get("results", {})
        self._step = int(self._state.step)
        if self._pbar:
            self._pbar.update(self._step - self._pbar.n)
        self._resume = None

    def _end_stage(self, si: int, stage: Stage) -> None:
        """Final evaluation of the stage, its results, and a checkpoint at its last step."""
        results = self.evaluate(stage, self._step)
        if results:
            self._save_best(si, stage, self._step, results)
            self.results.update(results)
        if self._state is not None:
            self._checkpoint(self._step, si, stage, self._state)
        self._starts_from = f"last params of stage {stage.name!r} (step {self._step})"
        if self.cfg.restore_best and si + 1 < len(self.stages):
            params, info = self.selected(si, stage)
            if info["params"] != "last":
                self.params = params
                self._starts_from = f"best params of stage {stage.name!r} (step {info['step']})"
            log.info("stage %s: the next stage starts from %s", stage.name, self._starts_from)
        log.info(
            "stage %s done at step %d: %d train compilation(s), %d eval compilation(s)",
            stage.name, self._step, self.train_counter.count, self.eval_counter.count,
        )  # fmt: skip

    # ---------------------------------------------------------------- after-step hooks
    def _check_finite(self) -> None:
        """NonFiniteLoss if the last unchecked step was not finite (its flag is read here). A
        non-finite step was a no-op in the step itself, so the state is still the last good one;
        called before anything is evaluated or saved, so nothing after such a step is."""
        if self._unchecked is None:
            return
        step, stage_name, flag = self._unchecked
        self._unchecked = None
        if float(flag) < 1.0:
            last = self.checkpointer.latest_step()
            raise NonFiniteLoss(
                f"stage {stage_name!r}: non-finite loss or gradient at step {step} (last "
                f"good checkpoint: step {last}, in {self.workdir / 'checkpoints'}); lower "
                "optim.lr or check the data"
            )

    def _log_hook(self, ev: StepEvent) -> None:
        """Log every ``log_every`` steps (and at phase ends).

        A log point writes one row per task that stepped since the last one (its latest step),
        not only the task of the step that lands on it: in an alternating mixture (labelled /
        unlabelled every other step) an even ``log_every`` would otherwise never show the
        labelled loss."""
        # The metrics stay on device until a log point; not the event itself, which would keep
        # its step's state alive.
        self._unlogged[ev.task] = (ev.step, ev.metrics, ev.stage.name, ev.phase, ev.phase_start)
        every = self.cfg.log_every
        if ev.step % every == 0 or ev.step == ev.phase_end:
            now = time.time()
            steps_per_sec = every / max(now - self._last_log, 1e-9)
            self._last_log = now
            rows = sorted(self._unlogged.items(), key=lambda kv: kv[1][0])
            self._unlogged = {}
            fetched = jax.device_get([row[1] for _, row in rows])
            vals: dict[str, float] = {}
            for (task, (step, _, stage_name, phase, phase_start)), m in zip(rows, fetched):
                vals = {k: float(v) for k, v in m.items() if k != "finite"}
                # The LR that step used (step `step - 1` of the run, counted from 0).
                vals["lr"] = float(phase.schedule(step - 1 - phase_start))
                vals["steps_per_sec"] = steps_per_sec
                self.metrics.write(step, "train", task, vals, stage=stage_name)
            if self._pbar:
                self._pbar.set_postfix(loss=f"{vals['loss']:.4f}", task=ev.task)
            if self._lines and (now - self._last_line >= PROGRESS_LINE_EVERY_S
                                or ev.step == ev.phase_end):  # fmt: skip
                self._last_line = now
                total = self._pbar.total  # a disabled bar still keeps its total
                left = (total - ev.step) / max(steps_per_sec, 1e-9)
                losses = ", ".join(f"{task} loss {float(m['loss']):.4f}"
                                   for (task, _), m in zip(rows, fetched))  # fmt: skip
                log.info("step %d/%d (%s): %s, lr %.3g, %.2f steps/s, about %s left",
                         ev.step, total, ev.stage.name, losses, vals["lr"],
                         steps_per_sec, _duration(left))  # fmt: skip

    def _eval_hook(self, ev: StepEvent) -> None:
        every = ev.stage.eval_every
        if not every or (ev.step - ev.stage_start) % every or ev.step >= ev.stage_end:
            return  # the stage's end evaluates anyway
        results = self.evaluate(ev.stage, ev.step)
        if results:
            improved = self._save_best(ev.stage_index, ev.stage, ev.step, results)
            self._evals_since_best = 0 if improved else self._evals_since_best + 1

    def _checkpoint_hook(self, ev: StepEvent) -> None:
        every = self.cfg.checkpoint_every
        if every and ev.step % every == 0:
            self._checkpoint(ev.step, ev.stage_index, ev.stage, ev.state)

    def _early_stop_hook(self, ev: StepEvent) -> None:
        patience = self.cfg.early_stop_patience
        if patience and self._evals_since_best >= patience:
            log.info("stage %s: early stop at step %d", ev.stage.name, ev.step)
            ev.stop = True

    def _signal_hook(self, ev: StepEvent) -> None:
        if self._signal is None:
            return
        self._checkpoint(ev.step, ev.stage_index, ev.stage, ev.state)
        self.best_writer.wait_until_finished()
        self.checkpointer.close()  # waits until the checkpoint is on disk
        self.metrics.close()
        raise Preempted(
            f"stopped by {signal.Signals(self._signal).name} at step {ev.step}; checkpoint saved in "
            f"{self.workdir / 'checkpoints'}: run the same command to resume"
        )

    # ---------------------------------------------------------------- files
    def _checkpoint(self, step: int, si: int, stage: Stage, state) -> None:
        self._check_finite()
        if self.checkpointer.latest_step() == step:
            return  # already saved at this step (checkpoint_every landed on a stage end)
        meta = {
            "stage": si,
            "stage_name": stage.name,
            "feed": stage.feed.state(),
            "best": self.tracker.best,
            "evals_since_best": self._evals_since_best,  # early-stopping patience survives
            "results": self.results,  # earlier stages' final results survive a resume
        }
        self.metrics.flush()  # a non-local metrics.jsonl is rewritten, not appended: sync it first
        # The bests this checkpoint names are on disk before it is: a resume does not replay the
        # evaluations up to it. Those of this very step may still be in flight: a resume rewrites
        # them from this checkpoint's params if they were cut short (_recover_best).
        self.best_writer.wait_until_finished(before_step=step)
        self.checkpointer.save(step, state, meta)

    def _record_plan(self, stage: Stage, si: int, phase, start: int) -> None:
        entry = {
            "stage": stage.name,
            "stage_index": si,
            "phase": phase.name,
            "start_step": start,
            "steps": phase.steps,
            "starts_from": self._starts_from if phase.start_step == 0 else "the previous phase",
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

    def selected_results(self) -> dict[str, dict[str, float]]:
        """Each task's dev results at its stage's selected (best) evaluation: what the selected
        params score (the last evaluation's when a stage kept no best)."""
        out = dict(self.results)
        for si, stage in enumerate(self.stages):
            best = self.tracker.best.get(f"{si}:{stage.name}")
            if best is not None and self.cfg.save_best:
                out.update({n: r for n, r in best["results"].items() if n in stage.eval_sets})
        return out

    def _finish(self) -> dict[str, Any]:
        # The last checkpoint is on disk before results.json says the run finished (a finished
        # workdir is never resumed, and its last params may be what --export reads).
        self.checkpointer.wait_until_finished()
        self.best_writer.wait_until_finished()
        out: dict[str, Any] = self.selected_results()
        # The average is over the tasks the run ends on (a sequential run's targets, not its
        # source tasks), GLUE-style, when there are at least two to average.
        tasks = {n: es.task for n, es in self.stages[-1].eval_sets.items()}
        final = {n: r for n, r in out.items() if n in tasks}
        avg = selection.averaged(final, tasks)
        if avg is not None:
            out["average"] = avg
        report.write_json(self.workdir / "results.json", out)
        report.plot_run(self.workdir, self.metrics.records, self.plans)
        compiled = runtime.STATS.snapshot(since=self._compiles_before)
        self.metrics.write(
            int(sum(s.steps for s in self.stages)),
            "run",
            "compilations",
            {"train": self.train_counter.count, "eval": self.eval_counter.count} | compiled,
        )
        log.info("compiled %d train and %d eval programs: %.1f s of XLA compilation, %d "
                 "persistent-cache hits, %d misses", self.train_counter.count,
                 self.eval_counter.count, compiled["compile_seconds"], compiled["cache_hits"],
                 compiled["cache_misses"])  # fmt: skip
        self.metrics.close()
        self.checkpointer.close()
        return out


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min``, ``2.5 h``: a rough time left, for progress lines."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
