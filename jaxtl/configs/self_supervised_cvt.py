"""Cross-View Training (Clark et al. 2018) on the built-in offline suite with the packaged MiniLM.

    python launch.py --regime=self_supervised --config=configs/self_supervised_cvt.py

Smoke-test size, same stages and strategy (``:tiny``, sizes in ``configs/tiny.py``; 33 s wall with
MiniLM on the shared 2-core CPU):

    python launch.py --regime=self_supervised --config=configs/self_supervised_cvt.py:tiny

One stage of ``train.steps`` = 120 steps alternating labelled builtin/ner batches with unlabelled
builtin/corpus lines (``unlabelled.ratio`` = 1: every other step). On unlabelled steps four
auxiliary tagging heads (``heads/builtin_ner__cvt_{forward,backward,future,past}/``) learn the
primary NER head's stop-gradient predictions from restricted views: left context, right
context, and the two shifted by one so that token t's own word is unseen (two extra masked
encoder passes per unlabelled step; see :mod:`jaxtl.objectives.cvt`). ``--config.target.tasks=
"('builtin/sentiment',)"`` uses the sentence views (``span``, ``subset``) instead; add
``no_self`` to ``cvt.views`` for the masked-word tagging view.

Measured with exactly this command on the shared 2-core CPU (2 min 36 s wall with other jobs
running, including setup; 3 train compilations, one per length bucket): builtin/ner span-F1
1.0000 / token accuracy 1.0000 on dev and test; batches drawn 60 labelled / 60 unlabelled. The logged CVT loss (sum over the four views
of the mean KL, unlabelled steps) goes 0.050 at step 10 -> 1.05 at step 20 -> 1.02 at step 120:
it starts near zero because the untrained primary head's predictions are near uniform, rises as
the primary head becomes confident, and then the auxiliary heads keep it from growing. (The
synthetic NER task is easy; the numbers show the objective runs and does not hurt, not that it
helps; a gain needs a harder target with less labelled data.)
"""

from jaxtl import config as config_lib
from jaxtl.configs import tiny
from jaxtl.regimes import self_supervised


def get_config(arg=None):
    tiny.check_arg(arg, __file__)
    c = config_lib.base_config()
    self_supervised.add_config(c)
    c.objective = "cvt"
    c.target.tasks = ("builtin/ner",)
    c.cvt.views = ("forward", "backward", "future", "past", "span", "subset")
    c.train.steps = 120
    c.train.batch_size = 16
    c.train.eval_every = 0
    c.optim.lr = 1e-4
    if arg == "tiny":
        tiny.shrink(c)
    return config_lib.finalize(c)
