"""Two processes on 127.0.0.1 (jax.distributed, 4 CPU devices each) = one process with 8."""

import json
import os
import pathlib
import socket
import subprocess
import sys

from conftest import xla_flags

REPO = pathlib.Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _args(workdir, model_dir):
    return [
        sys.executable,
        str(REPO / "launch.py"),
        "--regime=multitask",
        f"--workdir={workdir}",
        f"--config={REPO / 'configs' / 'multitask.py'}:tiny",
        f"--config.model.name={model_dir}",
        "--config.train.steps=6",
        "--config.train.batch_size=16",  # two rows per device of the 4 x 2 mesh
        "--config.data.max_eval_examples=40",  # a partial last eval batch, split over processes
        "--config.mesh.data=4",
        "--config.mesh.fsdp=2",
    ]


def _env(devices):
    env = dict(os.environ)
    env["XLA_FLAGS"] = xla_flags(devices)
    return env


def _records(workdir):
    lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines]


def test_two_processes_match_one(tiny_bert_dir, tmp_path):
    one = tmp_path / "one"
    p = subprocess.run(_args(one, tiny_bert_dir), env=_env(8), capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]

    two = tmp_path / "two"
    port = _free_port()
    procs = [
        subprocess.Popen(
            _args(two, tiny_bert_dir)
            + [
                "--config.distributed.enabled=True",
                f"--config.distributed.coordinator=127.0.0.1:{port}",
                "--config.distributed.num_processes=2",
                f"--config.distributed.process_id={i}",
            ],
            env=_env(4),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outs = [pr.communicate(timeout=300) for pr in procs]
    finally:
        for pr in procs:
            pr.kill()
    for pr, (_, err) in zip(procs, outs):
        assert pr.returncode == 0, err[-3000:]

    ref = {r["step"]: r["loss"] for r in _records(one) if r["split"] == "train"}
    got = {r["step"]: r["loss"] for r in _records(two) if r["split"] == "train"}
    assert sorted(got) == list(range(1, 7))
    for s in ref:
        assert abs(got[s] - ref[s]) <= 1e-5 * abs(ref[s]), (s, got[s], ref[s])
    # Both wrote their checkpoints (in the background, the default) whole: orbax's steps, the
    # last at the end of the run, each committed, the same steps.
    steps = [sorted(int(d.name) for d in (w / "checkpoints").iterdir() if d.name.isdigit())
             for w in (one, two)]  # fmt: skip
    assert steps[0] == steps[1] and steps[1][-1] == 6
    for w in (one, two):
        assert all((w / "checkpoints" / str(k) / "_CHECKPOINT_METADATA").exists() for k in steps[1])
    res_one = json.loads((one / "results.json").read_text())
    res_two = json.loads((two / "results.json").read_text())
    for task, metrics in res_one.items():
        for k, v in metrics.items():
            assert abs(res_two[task][k] - v) <= 1e-4, (task, k)
