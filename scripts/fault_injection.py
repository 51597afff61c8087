"""Fault injection for jaxtl runs: kill -9 at random moments, SIGTERM, a torn checkpoint, a
flipped bit in a checkpoint, a full disk (mid-checkpoint, metrics, results), and bad inputs —
every interrupted run must end equal to an uninterrupted one at every logged step and in the
model it selects (``selection.json`` and the ``best/`` params), and every bad input must be
refused in one line. Writes the figures to a JSON file and, with
--render, RELIABILITY.md's table.

    python scripts/fault_injection.py [--kills 8] [--seed 0] [--out reliability/results.json]
        [--set checkpoint.async_best=True ...]
    python scripts/fault_injection.py --render reliability/results.json

Runs the tiny multitask config on a tiny random BERT (built here, with the packaged MiniLM's
tokenizer) so each run takes seconds; checkpoints and evaluates every step (the similarity task's
correlation improves at nearly every evaluation, each writing ``best/``) so kills often land
mid-write.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
STEPS = 16
SETTINGS: list[str] = []  # --set KEY=VALUE: config overrides for every run


def tiny_model(out: pathlib.Path) -> pathlib.Path:
    from flax import nnx

    from jaxtl import models
    from jaxtl.models import hf

    cfg = {"vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2,
           "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 512,
           "type_vocab_size": 2}  # fmt: skip
    models.save_pretrained(models.build_encoder("bert", cfg, rngs=nnx.Rngs(0)), out)
    src = hf.resolve("minilm")
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (src / f).exists():
            shutil.copy(src / f, out / f)
    return out


def command(model: pathlib.Path, wd: pathlib.Path, *extra: str) -> list[str]:
    return [sys.executable, "launch.py", "--regime=multitask", "--config=configs/multitask.py:tiny",
            f"--config.model.name={model}", "--config.tasks.names=('builtin/similarity',)",
            f"--config.train.steps={STEPS}", "--config.checkpoint.every_steps=1",
            "--config.train.eval_every=1",
            "--config.train.log_every=1", f"--workdir={wd}",
            *(f"--config.{kv}" for kv in SETTINGS), *extra]  # fmt: skip


def losses(wd: pathlib.Path) -> list[tuple[int, float]]:
    rows = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [(r["step"], r["loss"]) for r in rows if r["split"] == "train"]


def outcome(wd: pathlib.Path) -> dict:
    """What a run ends with: its logged losses and the model it selects (``selection.json`` and,
    per ``best/`` folder, the steps it holds and a SHA-256 of each of its params)."""
    import orbax.checkpoint as ocp

    from jaxtl import checkpoint as ckpt_lib

    best = {}
    for d in sorted((wd / "best").iterdir()) if (wd / "best").is_dir() else []:
        steps = ckpt_lib.saved_params_steps(d)
        tree = ocp.StandardCheckpointer().restore(d / str(steps[-1]) / "state") if steps else {}
        best[d.name] = {"steps": steps, "params": ckpt_lib.checksums(tree, {})}
    sel = wd / "selection.json"
    return {"losses": losses(wd), "selection": json.loads(sel.read_text()) if sel.exists() else None,
            "best": best}  # fmt: skip


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)


def kill9_case(model, root, baseline, wall, kills, rng) -> dict:
    """``kills`` SIGKILLs in a row on one workdir, each at a random moment of a (resumed) run,
    then a run to the end: its losses must equal the uninterrupted run's at every step."""
    wd = root / "kill9"
    injected, crashed = 0, []
    for _ in range(4 * kills):
        if injected == kills:
            break
        proc = subprocess.Popen(command(model, wd), cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        time.sleep(rng.uniform(0.3, wall))
        if proc.poll() is None:
            proc.kill()  # SIGKILL: no handler runs, a checkpoint may be half-written
            injected += 1
        _, err = proc.communicate()
        if proc.returncode not in (0, -signal.SIGKILL):
            crashed.append(err.strip().splitlines()[-1] if err.strip() else str(proc.returncode))
    p = run(command(model, wd))
    ok = p.returncode == 0 and not crashed and outcome(wd) == baseline
    out = {"case": f"kill -9 at random moments, {injected} times in a row on one workdir "
           "(checkpoint every step), then resume to the end", "injected": injected,
           "survived": injected if ok else 0}  # fmt: skip
    if not ok:
        out["error"] = crashed or p.stderr.strip().splitlines()[-1:]
    return out


def sigterm_case(model, root, baseline) -> dict:
    wd = root / "sigterm"
    proc = subprocess.Popen(command(model, wd), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    while proc.poll() is None and not ((wd / "metrics.jsonl").exists() and len(losses(wd)) >= 4):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    clean = proc.returncode == 0 and "run the same command to resume" in out
    p = run(command(model, wd))
    ok = clean and p.returncode == 0 and outcome(wd) == baseline
    return {"case": "SIGTERM mid-run: exit 0, then resume", "injected": 1, "survived": int(ok)}


def torn_checkpoint_case(model, root, baseline, done: pathlib.Path) -> dict:
    wd = root / "torn"
    shutil.copytree(done, wd)
    steps = sorted(int(p.name) for p in (wd / "checkpoints").iterdir() if p.name.isdigit())
    for f in (wd / "checkpoints" / str(steps[-1])).rglob("*"):
        if f.is_file() and "ocdbt.process_0/d" in str(f):
            f.write_bytes(f.read_bytes()[:10])
    p = run(command(model, wd))
    ok = (p.returncode == 0 and outcome(wd) == baseline
          and (wd / "corrupt_checkpoints" / str(steps[-1])).is_dir())  # fmt: skip
    return {"case": "latest checkpoint torn: moved aside, previous one resumed", "injected": 1,
            "survived": int(ok)}  # fmt: skip


def flipped_bit_case(model, root, baseline, done: pathlib.Path) -> dict:
    """One bit flipped in the middle of the latest checkpoint's largest array chunk: it still
    decodes (zstd chunks carry no checksum), so only jaxtl's checksums can catch it."""
    wd = root / "flipped"
    shutil.copytree(done, wd)
    steps = sorted(int(p.name) for p in (wd / "checkpoints").iterdir() if p.name.isdigit())
    latest = wd / "checkpoints" / str(steps[-1])
    chunk = max((f for f in latest.rglob("*") if f.is_file() and "ocdbt.process_0/d" in str(f)),
                key=lambda f: f.stat().st_size)  # fmt: skip
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x10
    chunk.write_bytes(bytes(data))
    p = run(command(model, wd))
    ok = (p.returncode == 0 and outcome(wd) == baseline and "checksum mismatch" in p.stderr
          and (wd / "corrupt_checkpoints" / str(steps[-1])).is_dir())  # fmt: skip
    return {"case": "one bit flipped in the latest checkpoint's array data: checksum mismatch, "
            "moved aside, previous one resumed", "injected": 1, "survived": int(ok)}  # fmt: skip


def full_disk_case(model, root, baseline, what: str, pattern: str, nth: int) -> dict:
    """The disk fills up while ``pattern`` is written (scripts/full_disk.py: half a write, then
    ENOSPC for every later write): the run must stop with one line, leave no half-written jaxtl
    file and keep its good checkpoints; the next run (disk freed) must end equal to the
    uninterrupted run."""
    wd = root / f"full_disk_{len(list(root.glob('full_disk_*')))}"  # PATTERN must not match it
    full = [sys.executable, "scripts/full_disk.py", pattern, str(nth), *command(model, wd)[1:]]
    p = run(full)
    last = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
    one_line = p.returncode == 1 and last.startswith("jaxtl: error: no space left on device")
    no_tmp = not [f for f in wd.rglob("*") if ".tmp-" in f.name]
    good = [int(c.name) for c in (wd / "checkpoints").iterdir() if c.name.isdigit()]
    p = run(command(model, wd))
    ok = one_line and no_tmp and bool(good) and p.returncode == 0 and outcome(wd) == baseline
    out = {"case": f"disk full while writing {what}: one-line error, no half-written file, "
           "good checkpoints kept, then resume", "injected": 1, "survived": int(ok)}  # fmt: skip
    if not ok:
        out["error"] = {"last_line": last, "no_tmp": no_tmp, "good_steps": good,
                        "resume": p.stderr.strip().splitlines()[-1:]}  # fmt: skip
    return out


def torn_metrics_case(model, root, baseline, done: pathlib.Path) -> dict:
    wd = root / "torn_metrics"
    shutil.copytree(done, wd)
    (wd / "metrics.jsonl").write_text((wd / "metrics.jsonl").read_text() + '{"step": 99, "lo')
    p = run(command(model, wd))
    ok = p.returncode == 0 and outcome(wd) == baseline
    return {"case": "torn last line of metrics.jsonl", "injected": 1, "survived": int(ok)}


def bad_inputs(model, root) -> list[dict]:
    data = root / "bad_data"
    data.mkdir()
    (data / "train.tsv").write_text("sentence\tlabel\ngood film\tpos\nbad film\n")
    (data / "dev.tsv").write_text("sentence\tlabel\ngood film\tpos\n")
    spec = f"file:name=mine,path={data}/{{split}}.tsv,text=sentence,label=label"
    cases = {
        "unknown strategy": ["--config.optim.strategy=foo"],
        "unknown representation": ["--config.model.representation=last4"],
        "batch not divisible by accumulation": ["--config.train.accum_steps=3"],
        "negative steps": ["--config.train.steps=-1"],
        "TSV row with a missing field": [f"--config.tasks.names=('{spec}',)"],
        "unknown task-spec option": [f"--config.tasks.names=('{spec},lable=x',)"],
        "missing data file": [f"--config.tasks.names=('{spec.replace(str(data), '/nonexistent')}',)"],
        "unknown task": ["--config.tasks.names=('glue/nope',)"],
    }  # fmt: skip
    out = []
    for name, extra in cases.items():
        p = run(command(model, root / "bad" / name.replace(" ", "_"), *extra))
        last = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
        one_line = p.returncode != 0 and "Traceback" not in p.stderr and last.startswith("jaxtl:")
        out.append({"input": name, "rejected_in_one_line": one_line, "message": last[:240]})
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="reliability/results.json")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override for every run (repeatable)")  # fmt: skip
    ap.add_argument(
        "--render", default=None, help="write RELIABILITY.md's table from a results file"
    )
    args = ap.parse_args(argv)
    SETTINGS[:] = args.set
    if args.render:
        render(json.loads(pathlib.Path(args.render).read_text()), args.render)
        return 0
    t0 = time.time()
    rng = random.Random(args.seed)
    root = pathlib.Path(tempfile.mkdtemp(prefix="jaxtl-faults-"))
    os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    try:
        model = tiny_model(root / "model")
        done = root / "baseline"
        p = run(command(model, done))
        assert p.returncode == 0, p.stderr[-2000:]
        baseline = outcome(done)
        # Kill moments are drawn over a warm run's length (compiled programs cached, as for every
        # run after the first): the cold baseline is longer, and kills drawn past a run's end
        # would mostly hit re-runs of a finished workdir.
        start = time.time()
        p = run(command(model, root / "warm"))
        assert p.returncode == 0 and outcome(root / "warm") == baseline, p.stderr[-2000:]
        wall = time.time() - start
        faults = [kill9_case(model, root, baseline, wall, args.kills, rng),
                  sigterm_case(model, root, baseline),
                  torn_checkpoint_case(model, root, baseline, done),
                  flipped_bit_case(model, root, baseline, done),
                  torn_metrics_case(model, root, baseline, done),
                  full_disk_case(model, root, baseline, "a checkpoint",
                                 f"checkpoints/{STEPS // 2}", 3),
                  full_disk_case(model, root, baseline, "metrics.jsonl", "metrics.jsonl", 6),
                  full_disk_case(model, root, baseline, "results.json", "results.json", 1)]  # fmt: skip
        bad = bad_inputs(model, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results = {
        "command": f"python scripts/fault_injection.py --kills {args.kills} --seed {args.seed}"
        + "".join(f" --set {kv}" for kv in args.set),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "seconds": round(time.time() - t0, 1), "steps_per_run": STEPS,
        "faults": faults, "bad_inputs": bad,
    }  # fmt: skip
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    render(results, str(out))
    ok = all(f["survived"] == f["injected"] for f in faults) and all(
        b["rejected_in_one_line"] for b in bad
    )
    print(json.dumps(results, indent=2))
    return 0 if ok else 1


def render(results: dict, source: str) -> None:
    path = REPO / "RELIABILITY.md"
    text = path.read_text()
    start, end = "<!-- faults:start -->", "<!-- faults:end -->"
    injected = sum(f["injected"] for f in results["faults"])
    survived = sum(f["survived"] for f in results["faults"])
    tried = len(results["bad_inputs"])
    rejected = sum(b["rejected_in_one_line"] for b in results["bad_inputs"])
    lines = [start, "", "| fault | injected | runs that ended equal to the uninterrupted run |",
             "|---|---|---|"]  # fmt: skip
    lines += [f"| {f['case']} | {f['injected']} | {f['survived']} |" for f in results["faults"]]
    lines += ["", f"Faults injected {injected}, survived {survived}; data lost: "
              f"{injected - survived} runs. Bad inputs tried {tried}, refused in one line "
              f"{rejected}:", "", "| bad input | refused in one line | message |", "|---|---|---|"]  # fmt: skip
    lines += [f"| {b['input']} | {'yes' if b['rejected_in_one_line'] else 'NO'} | "
              f"`{b['message'].replace('|', '/')}` |" for b in results["bad_inputs"]]  # fmt: skip
    lines += ["", f"Command: `{results['command']}` ({results['seconds']} s, {results['date']}; "
              f"results: `{source}`).", "", end]  # fmt: skip
    if start in text and end in text:
        text = text[: text.index(start)] + "\n".join(lines) + text[text.index(end) + len(end) :]
        path.write_text(text)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
