"""Start the jaxtl commands tests run from a process that has already imported jaxtl.

A test that runs ``python launch.py ...`` or ``python -m jaxtl ...`` through ``subprocess.run``
pays ~5 s of imports before the command does anything (jax, flax, orbax, transformers,
scikit-learn, matplotlib), and the default test run starts ~80 such commands (70 forked here
on 2026-12-06). Here one helper process per test worker imports all of that once — never
starting JAX's backend, so no device, thread or XLA flag is fixed yet — and forks a child for
each command: the child takes the command's working directory, environment, argv, stdin,
stdout and stderr, runs ``launch.py`` (or a wrapper of it, :data:`SCRIPTS`) or
``jaxtl/__main__.py`` as ``__main__`` exactly as Python would, runs the exit handlers and exits
with the command's status. The test gets the ``CompletedProcess`` (or ``TimeoutExpired``) that
``subprocess.run`` would give.

What differs from a new interpreter: output printed while the packages import (none today) is
not in the captured stderr. Commands whose environment changes what a package reads once at
import (``JAX_*``, ``HF_*``, ``TRANSFORMERS_*``, ``PYTHON*`` …) run as real processes, as do
commands with other ``subprocess.run`` arguments, other programs, and every ``Popen`` (tests
that signal or kill a run). The installed ``jaxtl`` script and ``python -c`` checks of what
importing does stay real processes too. ``JAXTL_TEST_FORK=0`` runs every command for real;
``JAXTL_TEST_LAUNCH_LOG=FILE`` writes a line per command: forked or real, and why.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(REPO, "launch.py")

# What the helper imports before it forks: everything a run imports (measured with
# ``python -X importtime launch.py ...``), so a command's child imports nothing heavy itself.
PRELOAD = (
    "jaxtl.cli", "jaxtl.regimes.multitask", "jaxtl.regimes.unsupervised_sequential",
    "jaxtl.regimes.supervised_sequential", "jaxtl.regimes.self_supervised", "jaxtl.train",
    "jaxtl.predictor", "jaxtl.export", "jaxtl.metrics", "jaxtl.report", "sklearn.metrics",
    "seqeval.metrics", "scipy.stats", "matplotlib.pyplot", "orbax.checkpoint", "optax",
    "transformers", "tensorboardX", "tokenizers", "datasets", "pyarrow.parquet", "sacrebleu",
    "tqdm.auto", "rich.table",
)  # fmt: skip

# Read once when a preloaded package is imported (jax's config, huggingface_hub's and
# transformers' constants, matplotlib's backend, the interpreter's and native libraries'
# settings), so a command that sets them differently from the helper starts a fresh
# interpreter. XLA_FLAGS, TOKENIZERS_PARALLELISM, XDG_CACHE_HOME … are read when used: the
# child's environment is the command's.
_READ_AT_IMPORT = ("JAX_", "HF_", "TRANSFORMERS_", "PYTHON", "MPL", "OMP_", "MKL_", "OPENBLAS_")
_ROUTED_KWARGS = {"cwd", "env", "capture_output", "text", "timeout", "input", "check"}

_real_run = subprocess.run


# Scripts run as a command is: launch.py, and the wrappers that run it with a stand-in storage
# layer installed in Python (a gs:// bucket, a disk that fills up).
SCRIPTS = (
    "launch.py",
    os.path.join("tests", "fake_gcs.py"),
    os.path.join("scripts", "full_disk.py"),
)


def _program(cmd: Any) -> tuple[str, str] | None:
    """("script", path) for ``python launch.py`` (or a wrapper of it), ("module", "jaxtl") for
    ``python -m jaxtl``; None for anything else."""
    if not isinstance(cmd, list | tuple) or len(cmd) < 2 or str(cmd[0]) != sys.executable:
        return None
    script = str(cmd[1])
    for known in SCRIPTS:
        if script == known or os.path.abspath(script) == os.path.join(REPO, known):
            return ("script", script)
    if len(cmd) >= 3 and cmd[1] == "-m" and cmd[2] == "jaxtl":
        return ("module", "jaxtl")
    return None


def _import_time_env(env: dict[str, str]) -> dict[str, str | None]:
    return {
        k: env.get(k) for k in sorted(set(env) | set(os.environ)) if k.startswith(_READ_AT_IMPORT)
    }


class _Helper:
    """The forking process, started on first use; one request at a time."""

    def __init__(self) -> None:
        self.log = tempfile.NamedTemporaryFile(
            prefix="jaxtl-launcher-", suffix=".log", delete=False
        )
        # Unbuffered: a reply read with readline must not sit in a buffer select cannot see.
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__)], cwd=REPO,
                                     bufsize=0, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, env=dict(os.environ))  # fmt: skip
        self.env = _import_time_env(dict(os.environ))
        self.lock = threading.Lock()
        self.ready = False

    def wait_ready(self) -> None:
        """Started early, it imports while the test process runs other tests; wait once."""
        if not self.ready:
            if not self.proc.stdout.readline().startswith(b"ready"):
                raise RuntimeError(f"test launcher did not start; see {self.log.name}")
            self.ready = True

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, cmd: list[str], kind: tuple[str, str], *, cwd, env, input, timeout, text):
        self.wait_ready()
        with self.lock, tempfile.TemporaryDirectory(prefix="jaxtl-cmd-") as tmp:
            stdin = None
            if input is not None:
                stdin = os.path.join(tmp, "stdin")
                with open(stdin, "wb") as f:
                    f.write(input.encode() if isinstance(input, str) else input)
            out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
            req = {"kind": kind[0], "target": kind[1], "argv": [str(a) for a in cmd[1:]],
                   "cwd": os.fspath(cwd) if cwd is not None else os.getcwd(), "env": env,
                   "stdin": stdin, "stdout": out, "stderr": err}  # fmt: skip
            self.proc.stdin.write((json.dumps(req) + "\n").encode())
            self.proc.stdin.flush()
            pid = json.loads(self.proc.stdout.readline())["pid"]
            timed_out = False
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            if not ready:
                timed_out = True
                os.kill(pid, signal.SIGKILL)
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the test launcher died running {cmd}; see {self.log.name}")
            rc = json.loads(line)["rc"]
            stdout, stderr = open(out, "rb").read(), open(err, "rb").read()
        if text:
            stdout, stderr = stdout.decode(), stderr.decode()
        if timed_out:
            raise subprocess.TimeoutExpired(cmd, timeout, output=stdout, stderr=stderr)
        return subprocess.CompletedProcess(cmd, rc, stdout, stderr)

    def close(self) -> None:
        if self.alive():
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


_helper: _Helper | None = None


def run(cmd, *args, **kwargs):
    """``subprocess.run``, with jaxtl commands started from the helper (see the module)."""
    global _helper
    kind = _program(cmd)
    env = kwargs.get("env")
    env = dict(os.environ if env is None else env)
    if (
        kind is None or args or not set(kwargs) <= _ROUTED_KWARGS
        or os.environ.get("JAXTL_TEST_FORK", "1") == "0"
    ):  # fmt: skip
        _note("real", cmd, kwargs)
        return _real_run(cmd, *args, **kwargs)
    if _helper is None or not _helper.alive():
        _helper = _Helper()
    got = _import_time_env(env)
    if got != _helper.env:
        _note("real-env", cmd, {k for k in got.keys() | _helper.env.keys()
                                if got.get(k) != _helper.env.get(k)})  # fmt: skip
        return _real_run(cmd, *args, **kwargs)
    _note("fork", cmd, kwargs)
    p = _helper.run(list(cmd), kind, cwd=kwargs.get("cwd"), env=env, input=kwargs.get("input"),
                    timeout=kwargs.get("timeout"), text=bool(kwargs.get("text")))  # fmt: skip
    if not kwargs.get("capture_output"):  # the output goes where the test's own would
        sys.stdout.write(p.stdout if isinstance(p.stdout, str) else p.stdout.decode())
        sys.stderr.write(p.stderr if isinstance(p.stderr, str) else p.stderr.decode())
        p.stdout = p.stderr = None
    if kwargs.get("check"):
        p.check_returncode()
    return p


def _note(how: str, cmd: Any, why: Any) -> None:
    """One line per command to ``$JAXTL_TEST_LAUNCH_LOG`` (when set): how it ran and why."""
    if os.environ.get("JAXTL_TEST_LAUNCH_LOG"):
        shown = cmd if isinstance(cmd, str) else " ".join(map(str, cmd))
        test = os.environ.get("PYTEST_CURRENT_TEST")
        with open(os.environ["JAXTL_TEST_LAUNCH_LOG"], "a") as f:
            f.write(f"{how}\t{test}\t{shown[:200]}\t{sorted(why)}\n")


def start() -> None:
    """Start the helper now (it imports in the background) unless commands run for real."""
    global _helper
    if os.environ.get("JAXTL_TEST_FORK", "1") != "0" and _helper is None:
        _helper = _Helper()


def close() -> None:
    if _helper is not None:
        _helper.close()


# ------------------------------------------------------------------------------ the helper side


def _child(req: dict[str, Any]) -> None:
    """In the forked child: become the command, run it, exit with its status (never returns)."""
    code = 1
    try:
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        for fd, path, flags in ((0, req["stdin"] or os.devnull, os.O_RDONLY),
                                (1, req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                (2, req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):  # fmt: skip
            new = os.open(path, flags, 0o644)
            os.dup2(new, fd)
            os.close(new)
        import runpy

        if req["kind"] == "script":
            script = req["argv"][0]
            sys.argv = list(req["argv"])
            sys.path[0] = os.path.dirname(os.path.abspath(script))
            runpy.run_path(script, run_name="__main__")
        else:
            sys.argv = ["-m", *req["argv"][2:]]  # run_module puts the module's file first
            sys.path[0] = os.getcwd()
            runpy.run_module(req["target"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:
        if e.code is None:
            code = 0
        elif isinstance(e.code, int):
            code = e.code
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            import atexit

            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _serve() -> None:
    import importlib

    import matplotlib

    matplotlib.use("Agg")
    for name in PRELOAD:
        importlib.import_module(name)
    import transformers

    # transformers builds its lazy import table on the first class asked for (~0.6 s).
    transformers.BertTokenizerFast  # noqa: B018
    from jax._src import xla_bridge

    assert not xla_bridge._backends, "a preloaded module started JAX's backend"
    # The protocol gets its own descriptors; 0 and 1 become /dev/null and the log, so nothing a
    # module prints can reach the test as a reply.
    requests = os.fdopen(os.dup(0), "r")
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    import gc

    gc.collect()
    gc.freeze()  # the collector in each child leaves the shared, preloaded objects alone
    replies.write("ready\n")
    replies.flush()
    for line in requests:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            requests.close()
            replies.close()
            _child(req)
        replies.write(json.dumps({"pid": pid}) + "\n")
        replies.flush()
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"rc": os.waitstatus_to_exitcode(status)}) + "\n")
        replies.flush()


if __name__ == "__main__":
    sys.path[0] = REPO  # jaxtl from this checkout, as the tests import it
    _serve()
