"""The ``:tiny`` config argument: the same run, shrunk to a smoke test of about a minute on CPU.

Every config file takes it (``launch.py`` passes the text after ``:`` to ``get_config``):

    python launch.py --regime=multitask --config=configs/multitask.py:tiny

``shrink`` keeps what makes the run what it is — the model, the tasks, the objective, the number
of stages, the freezing strategy and its phases, the schedule — and cuts only sizes: steps of
every stage (enough for MiniLM's phased strategies: gradual unfreezing has 7 phases, chain-thaw
9), batch sizes, examples per task, sequence length and buckets (one bucket: one compilation per
program), LM block sizes, evaluation only at stage ends, a checkpoint mid-stage and a log line
every step. The sizes live here, once; config files only call ``shrink``. Real-data configs still
need ``--config.data.dir``.
"""

from __future__ import annotations

import os

import ml_collections

ARGS = (None, "", "tiny")  # what get_config(arg) accepts: the default run, or tiny

STEPS = 10  # per stage that runs (steps > 0); >= the phases of any strategy on MiniLM (L + 3)
BATCH_SIZE = 8
EVAL_BATCH_SIZE = 16
MAX_TRAIN_EXAMPLES = 64  # per task (and lines of an unlabelled corpus)
MAX_EVAL_EXAMPLES = 32
MAX_LENGTH = 32
BUCKETS = (32,)
BLOCK_SIZE = 32  # tokens per packed LM block (pretrain / unlabelled)
CHECKPOINT_EVERY = 5
LOG_EVERY = 1


def check_arg(arg: str | None, config_file: str) -> None:
    """ValueError naming the config file, the value and the valid ones unless ``arg`` is valid."""
    if arg not in ARGS:
        name = os.path.join(
            os.path.basename(os.path.dirname(os.path.abspath(config_file))),
            os.path.basename(config_file),
        )
        raise ValueError(
            f"{name}: unknown config argument {arg!r}; valid: none (the full run), '' (the same) "
            f"or 'tiny' (a smoke-test size: --config={name}:tiny)"
        )


def shrink(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Shrink ``c`` in place to smoke-test size (works on locked configs too) and return it.

    Stages are found by their keys: every top-level section with ``steps`` (``train``,
    ``source``, ``pretrain``, ``refine``, ...) keeps at most ``STEPS`` steps; a stage that is off
    (``steps == 0``) stays off, so the run has the same stages as the full one.
    """
    for name in list(c.keys()):
        section = c[name]
        if not isinstance(section, ml_collections.ConfigDict):
            continue
        if "steps" in section and section.steps > 0:
            section.steps = min(section.steps, STEPS)
        if "eval_every" in section:
            section.eval_every = 0  # evaluate at stage ends only
        if "block_size" in section:
            section.block_size = min(section.block_size, BLOCK_SIZE)
    c.train.batch_size = min(c.train.batch_size, BATCH_SIZE)
    c.train.eval_batch_size = min(c.train.eval_batch_size, EVAL_BATCH_SIZE)
    c.train.log_every = LOG_EVERY
    c.data.max_train_examples = _at_most(c.data.max_train_examples, MAX_TRAIN_EXAMPLES)
    c.data.max_eval_examples = _at_most(c.data.max_eval_examples, MAX_EVAL_EXAMPLES)
    c.data.max_length = min(c.data.max_length, MAX_LENGTH)
    c.data.buckets = BUCKETS
    if c.checkpoint.every_steps > 0:
        c.checkpoint.every_steps = min(c.checkpoint.every_steps, CHECKPOINT_EVERY)
    return c


def _at_most(n: int, cap: int) -> int:
    """``n`` capped at ``cap``; 0 (no limit) becomes ``cap``."""
    return cap if n <= 0 else min(n, cap)
