"""The run skeleton every regime shares: :func:`prepare` the run, build stages, :func:`finish` it.

    run = prepare(config, workdir, task_names, objective=..., optims=(...))
    stages = [...]                        # the regime's own part: which stages, in which order
    return finish(run, stages, "regime: dev results")

:func:`prepare` sets up the mesh, loads the encoder (with its LM head when an objective needs
one), tokenises the tasks and the objective's stream, builds the model (heads, the surgery of
every stage's strategy), applies ``model.init_from`` and takes the starting params.
:func:`finish` trains the stages with the one :class:`~jaxtl.train.Trainer`, writes
``task_counts.json`` (batches drawn per stream of the last stage), evaluates each stage's
*selected* params (its best dev evaluation, ``best/<stage>``) on the test splits
(``results_test.json``), writes ``predictions/<task>/<split>.jsonl`` for dev and test and
``selection.json`` (which stage, step, metric and value chose the params), exports the selected
model when ``export_dir`` is set (:func:`jaxtl.export.export_run`: the encoder, one transformers
task model per task, PEFT adapters for LoRA), and prints the results tables. ``results.json`` holds the dev results
of the same selected params.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import logging
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from etils import epath
from flax import nnx

from jaxtl import (
    assembly,
    export,
    fileio,
    metrics,
    models,
    predictions,
    report,
    runtime,
    selection,
    thresholds,
    train,
)
from jaxtl import config as config_lib
from jaxtl import workdir as workdir_lib
from jaxtl.data import tokenize
from jaxtl.data.prepare import TaskData, prepare_tasks, split_data
from jaxtl.objectives import Objective, seq2seq

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
    # Streams a regime adds after prepare, indices after the objective's (ULMFiT's target-text
    # LM stream, decoded by the objective's LM head).
    streams: list[TaskData] = dataclasses.field(default_factory=list)

    @property
    def all_tasks(self) -> list[TaskData]:
        """What the loss switches over: the labelled tasks, the objective's stream, then the
        regime's further streams."""
        own = [self.objective.data] if self.objective is not None else []
        return self.tasks + own + self.streams


def prepare(
    config: ml_collections.ConfigDict,
    workdir: str | epath.Path,
    task_names: Sequence[str],
    *,
    objective: Objective | None = None,
    optims: Sequence[Any] = (),
    lm_head: bool = False,
    from_scratch: bool = False,
    joint_stream: bool = False,
) -> Run:
    """Mesh, encoder, tasks, model, init and params of a run (see the module docstring).

    ``optims``: every stage's ``optim`` block (each strategy's surgery is applied; default the
    top-level ``config.optim``). ``lm_head``: load the encoder through the LM loader even without
    an LM objective (so ``from_scratch`` applies). ``joint_stream``: a stage draws the
    objective's stream together with the tasks, so the tasks are not packed
    (:func:`jaxtl.assembly.packing`).
    """
    workdir = fileio.workdir(workdir)
    config_lib.validate(config)  # bad values fail here, before anything heavy
    config_lib.absolute_local_paths(config)  # config.json must name the model from anywhere
    if config.get("export_dir"):  # --config.export_dir=<the workdir> would overwrite config.json
        workdir_lib.check_output(workdir, config.export_dir, "export_dir", folder=True)
        workdir_lib.check_export_folder(config.export_dir, "export_dir")
    if report.is_chief():
        workdir_lib.check_resume(config, workdir)  # before anything is loaded or overwritten
        lock = workdir_lib.Lock(workdir).acquire()
        atexit.register(lock.release)
    mesh = runtime.setup_mesh(config)
    folder = runtime.configure_compiler(config)
    runtime.listen_to_compiles()
    log.info("compilation cache: %s", folder or "off")
    lm = None
    if lm_head or (objective is not None and objective.needs_lm_head):
        lm = assembly.load_lm_model(config, from_scratch=from_scratch)
        encoder, tokenizer, hf_config = lm.encoder, lm.tokenizer, lm.hf_config
    else:
        pre = assembly.load_encoder(config)
        encoder, tokenizer, hf_config = pre.model, pre.tokenizer, pre.hf_config
    mixed = joint_stream or (objective is not None and not objective.packs)
    packed = assembly.packing(config, encoder, joint_stream=mixed)
    assembly.check_lengths(config, encoder, packed=packed)
    # A translation task's target side: the model's tokenizer, or one trained on its targets.
    target_tok = seq2seq.target_tokenizer(config, workdir, task_names, tokenizer)
    tasks = prepare_tasks(task_names, config, tokenizer, packed=packed,
                          target_tokenizer=target_tok)  # fmt: skip
    if report.is_chief():  # before a checkpoint's heads meet another label set
        workdir_lib.check_resume_tasks(workdir, [td.task for td in tasks])
    if config.get("export_dir"):  # now with the task folders the export will make
        workdir_lib.check_output(workdir, config.export_dir, "export_dir", folder=True,
                                 subfolders=[td.task.name for td in tasks])  # fmt: skip
    for td in tasks:  # BLEU reads text: the decoder's tokens and the targets, detokenised
        if td.task.kind == "translation":
            td.detokenize = tokenize.detokenizer(target_tok)
    heads: dict[str, nnx.Module] = {}
    if objective is not None:
        objective.setup(encoder, tokenizer, tasks, config)
        objective.stream(config, tokenizer, index=len(tasks), seed=config.seed * 1000 + 999)
        heads = objective.heads(lm.head if lm is not None else None)
    model = assembly.build_model(encoder, tasks, config, extra_heads=heads, optims=optims,
                                 tokenizer=target_tok)  # fmt: skip
    init = getattr(model, "init_report", None)  # a HF task checkpoint's head: reused or dropped
    if init is not None:
        report.write_json(workdir / "head_init.json", init.to_json())
    if objective is not None:
        objective.extend(model, config)
    if config.model.init_from:
        rep = assembly.init_from_checkpoint(model, config.model.init_from, workdir,
                                            skip=tuple(config.model.get("init_from_skip", ())))  # fmt: skip
        log.info("init_from %s: %s", config.model.init_from, rep.summary())
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    # What jaxtl.load needs to rebuild this model later (also when called from research code).
    report.write_json(workdir / "config.json", config.to_dict())
    report.write_json(workdir / "tasks.json", task_manifest(tasks, task_names, objective, lm))
    return Run(config, workdir, mesh, model, tokenizer, hf_config, tasks, objective, params)


def task_manifest(tasks, task_names, objective, lm) -> dict[str, Any]:
    """What ``jaxtl.load`` needs to rebuild the model without the training data: each labelled
    task's spec (as named in the config), kind, labels and head key."""
    return {
        "tasks": [
            {
                "name": td.task.name,
                "spec": spec,
                "key": td.key,
                "index": td.index,
                "kind": td.task.kind,
                "label_names": list(td.task.label_names),
                "text_fields": list(td.task.text_fields),
                "iob": td.task.iob,
                "tag_scheme": td.task.tag_scheme,
                "null_answers": td.task.null_answers,
                "metrics": list(td.task.metrics),
                "main_metric": td.task.main_metric,
            }
            for td, spec in zip(tasks, task_names)
        ],
        "lm_head": lm is not None,
        "objective": objective.name if objective is not None else None,
    }


def train_config(config: ml_collections.ConfigDict) -> train.TrainConfig:
    t = config.train
    return train.TrainConfig(
        seed=config.seed,
        log_every=t.log_every,
        checkpoint_every=config.checkpoint.every_steps,
        keep_checkpoints=config.checkpoint.keep,
        async_checkpoints=config.checkpoint.async_save,
        async_best=config.checkpoint.async_best,
        accum_steps=t.accum_steps,
        early_stop_patience=t.early_stop_patience,
        save_best=t.save_best,
        restore_best=t.restore_best,
        progress=t.progress,
        partitionable_rng=runtime.partitionable_rng(config.get("prng_partitionable", "auto")),
    )


def finish(run: Run, stages: Sequence[train.Stage], title: str) -> dict[str, Any]:
    """Train ``stages`` on the run's model, then write, export and print (module docstring)."""
    trainer = train.Trainer(
        run.model, stages, workdir=run.workdir, mesh=run.mesh, config=train_config(run.config)
    )
    results = trainer.run()
    test_results = evaluate_selected(run, trainer, stages, dev_results=results)
    counts = dict(getattr(stages[-1].feed, "counts", {})) if stages else {}
    if len(counts) > 1:
        report.write_json(run.workdir / "task_counts.json", counts)
    if run.config.get("export_dir") and report.is_chief():
        params, _ = trainer.selected(len(stages) - 1, stages[-1])
        exported = export.export_run(run, jax.device_get(params), run.config.export_dir)
        log.info("exported to %s: %s", run.config.export_dir, sorted(exported))
    if report.is_chief():
        print(results_table(results, title))
        if test_results:
            print(results_table(test_results, title.replace("dev results", "test results")))
        if len(counts) > 1:
            print("batches drawn per stream:", counts)
    workdir_lib.Lock(run.workdir).release()
    return results


def evaluate_selected(
    run: Run,
    trainer: train.Trainer,
    stages: Sequence[train.Stage],
    dev_results: dict[str, Any] | None = None,
) -> dict[str, dict[str, float]]:
    """With each stage's selected params: predictions for its tasks' dev and test splits, the
    test splits scored (labelled ones), ``selection.json``; under ``train.tune_thresholds`` a
    multilabel task's per-class thresholds, tuned on dev, then decide its records and test
    scores, and its dev scores in ``results.json`` (and ``dev_results``, updated in place). A
    task belongs to the last stage that evaluates it. Returns the test results (also written to
    ``results_test.json``)."""
    by_name = {td.task.name: td for td in run.all_tasks}
    owner = {n: si for si, st in enumerate(stages) for n in st.eval_sets}
    chosen, test, tuned, dev_now = [], {}, {}, {}
    tune = bool(run.config.train.get("tune_thresholds", False))
    objective = str(run.config.train.get("threshold_objective", "macro_f1"))
    for si, stage in enumerate(stages):
        names = [n for n in stage.eval_sets if owner[n] == si and n in by_name]
        if not names:
            continue
        params, info = trainer.selected(si, stage)
        info["dev_splits"] = {n: by_name[n].eval_split for n in names}
        chosen.append(info)
        for name in names:
            td = by_name[name]
            task = td.task  # with per-class thresholds once they are tuned on dev
            # MASS's span stream is "translation" without text to decode: no records.
            decodable = task.kind != "translation" or td.detokenize is not None
            records = task.kind in predictions.KINDS and decodable
            # dev first: the thresholds tuned on it decide the test split's scores and records
            for split, sd in sorted(td.splits.items(), key=lambda kv: kv[0] != "dev"):
                scored = split == "test" and sd.labelled
                # An LM corpus's dev split: no records, and scored in training. (Every process
                # decides alike: predicting is collective.)
                if not (scored or records):
                    continue
                outs, full = trainer.predict(stage, sd.batches, params)
                if tune and task.kind == "multilabel" and split == "dev" and sd.labelled:
                    task, tuned[name] = _tune_thresholds(task, outs, full, td.eval_split,
                                                         objective)  # fmt: skip
                    td.task = task  # the export writes them too
                elif tune and task.null_answers and split == "dev" and sd.labelled:
                    task, tuned[name] = _tune_null(task, sd, outs, full, td.eval_split)
                    td.task = task
                rows: list[dict] = []
                if records:
                    rows = predictions.records(task, sd.examples, sd.encoded, sd.buckets,
                                               outs, full, labelled=sd.labelled,
                                               detokenize=td.detokenize)  # fmt: skip
                # Texts longer than data.max_length: tagged whole in windows, then scored so.
                n_long = 0
                if task.kind == "tagging":
                    n_long = _tag_long_texts(run, trainer, stage, td, sd, params, rows)
                if n_long and sd.labelled and split == "dev":
                    dev_now[name] = _dev_over_every_word(task, rows, dev_results, n_long,
                                                         td.eval_split)  # fmt: skip
                if scored:
                    scores = (metrics.score_records(task, rows) if n_long or task.kind == "qa"
                              else metrics.score_task(task, outs, full, td.detokenize))  # fmt: skip
                    test[name] = {k: float(v) for k, v in scores.items()}
                if records and report.is_chief():
                    predictions.write_jsonl(
                        run.workdir / "predictions" / name / f"{split}.jsonl",
                        [predictions.in_scheme(r, task.tag_scheme) for r in rows],
                    )
    final = {n: es.task for n, es in stages[-1].eval_sets.items()} if stages else {}
    avg = selection.averaged({n: r for n, r in test.items() if n in final}, final)
    if test:
        report.write_json(
            run.workdir / "results_test.json", test | ({"average": avg} if avg else {})
        )
    report.write_json(run.workdir / "selection.json", {"stages": chosen})
    dev_now |= {n: t["dev_after"] for n, t in tuned.items()}
    if tuned and report.is_chief():
        thresholds.save(run.workdir, tuned)
    if dev_now and report.is_chief():
        dev = _rewrite_dev(run, dev_now, final)
        if dev_results is not None:
            dev_results.clear()
            dev_results.update(dev)
    return test


def _tag_long_texts(
    run: Run, trainer: train.Trainer, stage: train.Stage, td: TaskData, sd: Any, params: Any,
    rows: list[dict],
) -> int:  # fmt: skip
    """Tag each text of a tagging split longer than ``data.max_length`` tokens in overlapping
    windows, as ``--predict`` does (:func:`jaxtl.predictions.merge_windows`), and put those tags
    into its ``rows``, so every word is tagged and scored, not only those before the cut that
    training and the selection evaluations see. Returns how many texts it tagged so (0: every
    text fits; the rows are as they were)."""
    long = predictions.long_texts(sd.examples, sd.encoded.lengths, run.tokenizer,
                                  run.config.data.max_length)  # fmt: skip
    packed = bool(sd.batches) and "example_index" in sd.batches[0]

    def predict_parts(parts: list) -> list[dict]:
        wsd = split_data(sd.name, td.task, parts, run.config, run.tokenizer, index=td.index,
                         packed=packed)  # fmt: skip
        # A feature-cached stage holds features for the texts as cut only: its frozen encoder
        # runs on the windows (the same function the cache stores, to its tolerance).
        outs, full = trainer.predict(stage, wsd.batches, params, cached=False)
        return predictions.records(td.task, parts, wsd.encoded, wsd.buckets, outs, full,
                                   labelled=wsd.labelled)  # fmt: skip

    if long:
        predictions.retag_long_texts(rows, sd.examples, long, predict_parts)
    return len(long)


def _dev_over_every_word(
    task: Any, rows: list[dict], dev_results: dict | None, n_long: int, split: str
) -> dict[str, float]:
    """A tagging task's dev scores over every word (its long texts tagged in windows), logged
    beside the selection evaluation's, which left the words past the cut unscored."""
    now = {k: float(v) for k, v in metrics.score_records(task, rows).items()}
    before = (dev_results or {}).get(task.name, {}).get(task.main_metric)
    log.info("task %s: %d %s %s longer than data.max_length tagged in windows; dev %s %s "
             "-> %.4f (every word)", task.name, n_long, split, "text" if n_long == 1 else "texts",
             task.main_metric, "n/a" if before is None else f"{before:.4f}",
             now[task.main_metric])  # fmt: skip
    return now


def _tune_thresholds(
    task: Any, outs: Any, batches: Any, split: str, objective: str
) -> tuple[Any, dict]:
    """``task`` with per-class thresholds tuned on its dev outputs for ``objective``
    (:mod:`jaxtl.thresholds`), and what ``thresholds.json`` records of it."""
    gold, probs = metrics.multilabel_arrays(task, batches, outs)
    before = metrics.score_task(task, outs, batches)
    cut = thresholds.tune(gold, probs, float(np.mean(thresholds.per_class(task))), objective)
    task = thresholds.with_thresholds(task, cut)
    after = metrics.score_task(task, outs, batches)
    shown = objective if objective in after else task.main_metric  # a task's own metrics= list
    log.info("task %s: thresholds tuned on %s for %s: %s; dev %s %.4f -> %.4f (chosen on dev)",
             task.name, split, objective,
             ", ".join(f"{n} {t:.2f}" for n, t in zip(task.label_names, cut)),
             shown, before[shown], after[shown])  # fmt: skip
    return task, {
        "chosen_on": split,
        "objective": objective,
        "thresholds": dict(zip(task.label_names, cut)),
        "dev_before": {k: float(v) for k, v in before.items()},
        "dev_after": {k: float(v) for k, v in after.items()},
    }


def _tune_null(task: Any, sd: Any, outs: Any, batches: Any, split: str) -> tuple[Any, dict]:
    """A qa task (``null_answers``) with its "no answer" threshold tuned on its dev outputs for
    F1 (:func:`jaxtl.thresholds.tune_null`), and what ``thresholds.json`` records of it."""

    def rows(t: Any) -> list[dict]:
        return predictions.records(t, sd.examples, sd.encoded, sd.buckets, outs, batches,
                                   labelled=True)  # fmt: skip

    spans = rows(dataclasses.replace(task, null_threshold=float("inf")))  # never "no answer"
    margins = np.array([r["null_score"] - r["score"] for r in spans])
    f1_span = np.array([metrics.squad_f1([r["gold"]], [r["answer"]]) for r in spans])
    f1_null = np.array([metrics.squad_f1([r["gold"]], [""]) for r in spans])
    before = metrics.score_records(task, rows(task))
    cut = thresholds.tune_null(margins, f1_span, f1_null, task.null_threshold)
    tuned = dataclasses.replace(task, null_threshold=cut)
    after = metrics.score_records(tuned, rows(tuned))
    log.info("task %s: 'no answer' threshold tuned on %s for f1: %.3f (was %.3f); dev f1 %.4f "
             "-> %.4f (chosen on dev)", task.name, split, cut, task.null_threshold,
             before["f1"] if "f1" in before else float("nan"),
             after["f1"] if "f1" in after else float("nan"))  # fmt: skip
    return tuned, {
        "chosen_on": split,
        "objective": "f1",
        "thresholds": {thresholds.NULL: cut},
        "dev_before": {k: float(v) for k, v in before.items()},
        "dev_after": {k: float(v) for k, v in after.items()},
    }


def _rewrite_dev(run: Run, dev: dict[str, dict], final: dict[str, Any]) -> dict[str, Any]:
    """``results.json``'s dev scores of the tasks in ``dev`` (and its average) as the selected
    model now predicts them: with thresholds tuned on dev, or over every word of long texts."""
    path = run.workdir / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results.update(dev)
    results.pop("average", None)
    avg = selection.averaged({n: r for n, r in results.items() if n in final}, final)
    results |= {"average": avg} if avg else {}
    report.write_json(path, results)
    return results


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
