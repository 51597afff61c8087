"""STILTs-style intermediate training on real GLUE data: MRPC (paraphrase) before RTE.

    python launch.py --regime=supervised_sequential \
        --config=configs/supervised_sequential_glue.py --config.data.dir=../shared/data

Smoke-test size, same stages and strategy (``:tiny``, sizes in ``configs/tiny.py``; 33 s wall with
MiniLM on the shared 2-core CPU):

    python launch.py --regime=supervised_sequential \
        --config=configs/supervised_sequential_glue.py:tiny \
        --config.data.dir=../shared/data

RTE (2,490 training pairs) is the classic beneficiary of an intermediate sentence-pair task.
MNLI is the usual source but is not in ../shared/data; any GLUE-layout MNLI works with
``--config.source.tasks='("glue/mnli",)'``.
"""

from jaxtl import config as config_lib
from jaxtl.configs import tiny
from jaxtl.regimes import supervised_sequential


def get_config(arg=None):
    tiny.check_arg(arg, __file__)
    c = config_lib.base_config()
    supervised_sequential.add_config(c)
    c.source.tasks = ("glue/mrpc",)
    c.source.steps = 1000
    c.source.optim.lr = 5e-5
    c.target.tasks = ("glue/rte",)
    c.train.steps = 800
    c.train.eval_every = 200
    c.optim.lr = 3e-5
    if arg == "tiny":
        tiny.shrink(c)
    return config_lib.finalize(c)
