"""Multi-task learning over five GLUE tasks (MT-DNN style) with the packaged MiniLM encoder.

    python launch.py --regime=multitask --config=configs/multitask_glue.py \
        --config.data.dir=../shared/data [--config.train.steps=50]

Smoke-test size, same stages and strategy (``:tiny``, sizes in ``configs/tiny.py``; 22 s wall with
MiniLM on the shared 2-core CPU):

    python launch.py --regime=multitask --config=configs/multitask_glue.py:tiny \
        --config.data.dir=../shared/data

SST-2, CoLA, MRPC, RTE (classification / sentence pairs) and STS-B (regression) share one
encoder; tasks are drawn with temperature-2 sampling (p ∝ n^0.5), so the small tasks (RTE 2.5k,
MRPC 3.7k) are seen far more often than their share of the data. Dev metrics per task: accuracy
(SST-2, RTE), Matthews correlation (CoLA), F1/accuracy (MRPC), Pearson/Spearman (STS-B), and
their GLUE-style average. ``refine.steps > 0`` adds MT-DNN's per-task refinement.
"""

from jaxtl import config as config_lib
from jaxtl.configs import tiny
from jaxtl.regimes import multitask


def get_config(arg=None):
    tiny.check_arg(arg, __file__)
    c = config_lib.base_config()
    multitask.add_config(c)
    c.tasks.names = ("glue/sst2", "glue/cola", "glue/mrpc", "glue/rte", "glue/stsb")
    c.mixture.scheme = "temperature"
    c.mixture.temperature = 2.0
    c.train.steps = 3000
    c.train.eval_every = 500
    c.checkpoint.every_steps = 500
    c.optim.lr = 5e-5
    c.optim.schedule = "linear"
    c.optim.warmup = 0.1
    if arg == "tiny":
        tiny.shrink(c)
    return config_lib.finalize(c)
