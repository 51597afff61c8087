"""The seed's recurrent and sequence-to-sequence systems on real data, each against the control
its paper argues against: ELMo, ULMFiT, CoVe, MASS and UNILM.

Each system runs its own config (``configs/<regime>_<system>.py``) in two steps:

1. **Stage 1 once** (the system's pretraining: the biLM, the AWD-LSTM LM, CoVe's translation
   model, MASS or UNILM pretraining), with its held-out score — dev and test perplexity on
   WikiText (the WikiText-103 test articles, which are WikiText-2's; subword perplexity, so not
   comparable with the papers' word-level numbers), or Multi30k dev and test BLEU for CoVe. Its
   checkpoint at the end of stage 1 is kept.
2. **The target stage per setting and seed**, starting from that checkpoint
   (``model.init_from=<stage 1>/checkpoints/<step>``, stage 1 skipped), so settings differ only
   in what the paper varies:

   - ELMo: the frozen biLM's scalar mix with γ beside the token layer (``representation=elmo``)
     vs its static token embeddings alone, under the same BiLSTM tagger on CoNLL-2003 NER;
   - ULMFiT: with the target-domain LM fine-tuning stage (``lm_finetune``) vs without, then the
     same gradual-unfreezing classifier on SST-2;
   - CoVe: ``[embeddings; CoVe]`` vs the MT encoder's input embeddings alone under the same
     classifier on SST-2 (both frozen);
   - MASS, UNILM: the encoder after the pretraining stage vs MiniLM as packaged, fine-tuned the
     same way on SST-2.

Seeds vary the target stage (head initialisation, data order, dropout): a target run loads the
stage-1 checkpoint except its target head (``model.init_from_skip``), which each seed initialises
itself; stage 1 runs once per system, with the first seed. No model selection (the last step is
evaluated; dev is held out and the CoNLL test split is reported beside it). Welch's t-test over
seeds compares the two settings.

    python experiments/seed_systems.py --data-dir ../shared/data --seeds 0 1 2 [--only elmo,cove]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import time

from common import REPO, header, launch, mean_std, parse, test_results, welch, write


@dataclasses.dataclass(frozen=True)
class System:
    regime: str
    config: str
    stage1: str  # the config block whose ``steps`` is stage 1
    stage1_metric: tuple[str, str]  # (task, metric) scored at the end of stage 1
    target: tuple[str, str]  # (task, metric) of the target stage
    # setting -> overrides of the target stage; None = the control without stage 1 at all
    settings: dict[str, list[str] | None]
    packaged_encoder: bool = False  # MiniLM-based: --model applies
    extra: tuple[str, ...] = ()  # overrides of every run of the system


SYSTEMS = {
    "elmo": System(
        "unsupervised_sequential", "unsupervised_sequential_elmo.py", "pretrain",
        ("wikitext", "perplexity"), ("conll2003", "span_f1"),
        {"ELMo: scalar mix of the frozen biLM (γ) + token layer":
             ["--config.model.representation=elmo"],
         "static: the biLM's token embeddings alone":
             ["--config.model.representation=embeddings"]},
    ),
    "ulmfit": System(
        "unsupervised_sequential", "unsupervised_sequential_ulmfit.py", "pretrain",
        ("wikitext", "perplexity"), ("sst2", "accuracy"),
        {"with target-domain LM fine-tuning": [],
         "without it (lm_finetune.steps=0)": ["--config.lm_finetune.steps=0"]},
    ),
    "cove": System(
        "supervised_sequential", "supervised_sequential_cove.py", "source",
        ("multi30k", "bleu"), ("sst2", "accuracy"),
        {"[embeddings; CoVe]": ["--config.model.representation=cove"],
         "embeddings alone": ["--config.model.representation=embeddings"]},
    ),
    "mass": System(
        "unsupervised_sequential", "unsupervised_sequential_mass.py", "pretrain",
        ("wikitext", "perplexity"), ("sst2", "accuracy"),
        {"after MASS pretraining": [], "MiniLM as packaged (no MASS stage)": None},
        packaged_encoder=True,
    ),
    "unilm": System(
        "unsupervised_sequential", "unsupervised_sequential_unilm.py", "pretrain",
        ("wikitext", "perplexity"), ("sst2", "accuracy"),
        {"after UNILM pretraining": [], "MiniLM as packaged (no UNILM stage)": None},
        packaged_encoder=True,
    ),
}  # fmt: skip


def score(results: dict, task: str, metric: str) -> float | None:
    """``results[task][metric]``, the task named by its short name (``sst2`` for glue/sst2)."""
    for name, scores in results.items():
        if (name == task or name.split("/")[-1] == task) and metric in scores:
            return float(scores[metric])
    return None


def run_system(key: str, sys_: System, args: argparse.Namespace, out: pathlib.Path) -> dict:
    config = sys_.config + (":tiny" if args.tiny else "")
    common = [
        f"--config.data.dir={os.path.abspath(args.data_dir)}",
        f"--config.data.max_train_examples={args.max_train_examples}",
        f"--config.data.max_eval_examples={args.max_eval_examples}",
        "--config.train.eval_every=0",
        f"--config.{sys_.stage1}.eval_every=0",
        "--config.checkpoint.every_steps=0",  # checkpoints at stage ends only
        "--config.train.save_best=False",
        # A frozen encoder's cached features (ELMo's biLM, CoVe's MT encoder) are keyed by its
        # weights and the representation: every seed of a setting starts from the same stage-1
        # checkpoint, so they compute them once and share them.
        f"--config.features.dir={out / f'{key}-features'}",
        *sys_.extra,
    ]
    if args.batch_size:
        common.append(f"--config.train.batch_size={args.batch_size}")
    if args.max_length:
        length = args.max_length
        buckets = (length // 2, length) if length > 32 else (length,)
        common += [f"--config.data.max_length={length}", f"--config.data.buckets={buckets}"]
    if sys_.packaged_encoder and args.model != "minilm":
        common.append(f"--config.model.name={args.model}")
    target = [f"--config.train.steps={args.steps}"] if args.steps else []
    stage1_steps = (
        [f"--config.{sys_.stage1}.steps={args.stage1_steps}"] if args.stage1_steps else []
    )
    # Stage 1 alone (one plain target step, unused): its end-of-stage checkpoint is what every target
    # run starts from; ULMFiT's target-domain LM stage belongs to the settings, not to stage 1.
    first = out / f"{key}-stage1"
    no_ft = ["--config.lm_finetune.steps=0"] if key == "ulmfit" else []
    t0 = time.time()
    r1 = launch(sys_.regime, config, first, common + stage1_steps + no_ft + [
        f"--config.seed={args.seeds[0]}", "--config.train.steps=1",
        "--config.optim.strategy=finetune"], keep_checkpoints=True)  # fmt: skip
    t1 = test_results(first)
    steps1 = int(json.loads((first / "config.json").read_text())[sys_.stage1]["steps"])
    init = first / "checkpoints" / str(steps1)
    if not (init / "state").exists():
        raise SystemExit(f"{key}: no stage-1 checkpoint at {init}")
    stage1_time = time.time() - t0
    scores: dict[str, dict[str, list[float]]] = {}
    for setting, overrides in sys_.settings.items():
        slug = "control" if overrides is None else str(list(sys_.settings).index(setting))
        for seed in args.seeds:
            # The stage-1 checkpoint holds the target head as the first seed initialised it;
            # every seed starts its own (init_from_skip), so seeds vary the head's
            # initialisation here as they do in the control.
            start = [] if overrides is None else [
                f"--config.model.init_from={init}",
                f"--config.model.init_from_skip=('heads/{sys_.target[0]}/',)"]  # fmt: skip
            r = launch(sys_.regime, config, out / f"{key}-{slug}-s{seed}", common + target + [
                f"--config.{sys_.stage1}.steps=0", f"--config.seed={seed}", *start,
                *(overrides or [])])  # fmt: skip
            test = test_results(out / f"{key}-{slug}-s{seed}")
            got = scores.setdefault(setting, {"dev": [], "test": []})
            got["dev"].append(score(r, *sys_.target))
            t = score(test, *sys_.target)
            if t is not None:
                got["test"].append(t)
    return {
        "stage1": {"dev": score(r1, *sys_.stage1_metric), "test": score(t1, *sys_.stage1_metric),
                   "steps": steps1, "wall_s": stage1_time},
        "scores": scores, "wall_s": time.time() - t0,
    }  # fmt: skip


def table(key: str, sys_: System, res: dict) -> list[str]:
    task, metric = sys_.target
    s1, (s1_task, s1_metric) = res["stage1"], sys_.stage1_metric
    f = (lambda v: "—" if v is None else f"{v:.2f}") if s1_metric == "bleu" else (
        lambda v: "—" if v is None else f"{v:,.1f}")  # fmt: skip
    has_test = all(v["test"] for v in res["scores"].values())
    lines = [
        f"Stage 1 ({sys_.stage1}, {s1['steps']} steps, {s1['wall_s'] / 60:.0f} min): {s1_task} "
        f"{s1_metric} dev {f(s1['dev'])}, test {f(s1['test'])}.",
        "",
        f"| {key} setting | {task} dev {metric} |"
        + (f" {task} test {metric} |" if has_test else "")
        + " Welch p |",
        "|---|---|" + ("---|" if has_test else "") + "---|",
    ]
    names = list(res["scores"])
    for i, name in enumerate(names):
        v = res["scores"][name]
        p = "—" if i == 0 else f"{welch(v['dev'], res['scores'][names[0]]['dev']):.3f}"
        cells = [mean_std(v["dev"])] + ([mean_std(v["test"])] if has_test else []) + [p]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", default=os.environ.get("JAXTL_DATA_DIR", "../shared/data"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--only", default=",".join(SYSTEMS), help="comma-separated systems")
    ap.add_argument("--stage1-steps", type=int, default=0, help="0 = the config's")
    ap.add_argument("--steps", type=int, default=0, help="target steps; 0 = the config's")
    ap.add_argument("--batch-size", type=int, default=0, help="0 = the config's")
    ap.add_argument("--max-length", type=int, default=0, help="0 = the config's")
    ap.add_argument("--tiny", action="store_true", help="the configs' :tiny sizes (mechanics)")
    ap.add_argument("--out", default=str(REPO / "runs" / "exp-seed-systems"))
    args = parse(ap)
    keys = [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = sorted(set(keys) - set(SYSTEMS))
    if unknown:
        raise SystemExit(f"--only: unknown systems {unknown}; known: {list(SYSTEMS)}")
    for key in keys:
        sys_ = SYSTEMS[key]
        res = run_system(key, sys_, args, pathlib.Path(args.out).resolve())
        task, metric = sys_.target
        details = (
            f"`configs/{sys_.config}`{' :tiny' if args.tiny else ''} as it stands"
            + (f", stage 1 {args.stage1_steps} steps" if args.stage1_steps else "")
            + (f", target {args.steps} steps" if args.steps else "")
            + (f", batch {args.batch_size}" if args.batch_size else "")
            + (f", max_length {args.max_length}" if args.max_length else "")
            + f"; seeds {args.seeds} (stage 1 once, seed {args.seeds[0]}); last-step params, no "
            f"selection. {task} {metric} ×100, mean ± sample std over seeds; Welch's t-test "
            "(two-sided, over seeds) against the first row."
        )
        write(f"seed-{key}", [*header("seed_systems.py", res["wall_s"], details), "",
                              *table(key, sys_, res)], {"args": vars(args), **res})  # fmt: skip


if __name__ == "__main__":
    main()
