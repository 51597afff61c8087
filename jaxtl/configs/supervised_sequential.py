"""Supervised sequential transfer on the built-in offline suite with the packaged MiniLM.

    python launch.py --regime=supervised_sequential

Smoke-test size, same stages and strategy (``:tiny``, sizes in ``configs/tiny.py``; 33 s wall with
MiniLM on the shared 2-core CPU):

    python launch.py --regime=supervised_sequential --config=configs/supervised_sequential.py:tiny

Stage 1 trains on the labelled source task builtin/entailment (sentence pairs about who did what
to whom) for 200 steps; stage 2 adapts the same encoder to builtin/sentiment with a new head for
``train.steps`` = 150 steps. Adaptation knobs apply to stage 2 (``--config.optim.strategy=
gradual_unfreezing``, ``--config.optim.schedule=stlr`` …); stage 1 has ``source.optim``.
Compare with ``--config.source.steps=0`` (no intermediate task) to see what the source buys.

Measured with exactly this command on the shared 2-core CPU (5 min 56 s wall with other jobs
running, load average about 5): source builtin/entailment, selected at step 200, dev accuracy
0.8825 / test 0.8950; target builtin/sentiment, selected at step 350, dev and test accuracy
1.0000 (the synthetic sentiment task saturates; GLUE variant: supervised_sequential_glue).
"""

from jaxtl import config as config_lib
from jaxtl.configs import tiny
from jaxtl.regimes import supervised_sequential


def get_config(arg=None):
    tiny.check_arg(arg, __file__)
    c = config_lib.base_config()
    supervised_sequential.add_config(c)
    c.train.steps = 150
    c.train.eval_every = 0
    c.optim.lr = 1e-4
    if arg == "tiny":
        tiny.shrink(c)
    return config_lib.finalize(c)
