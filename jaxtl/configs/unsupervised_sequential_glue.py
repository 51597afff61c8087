"""ULMFiT-style recipe on real data: MLM on WikiText, then SST-2 with gradual unfreezing and STLR.

    python launch.py --regime=unsupervised_sequential \
        --config=configs/unsupervised_sequential_glue.py --config.data.dir=../shared/data

Smoke-test size, same stages and strategy (``:tiny``, sizes in ``configs/tiny.py``; 85 s wall with
MiniLM on the shared 2-core CPU, most of it compiling: gradual unfreezing recompiles the step at
each of its 7 phases):

    python launch.py --regime=unsupervised_sequential \
        --config=configs/unsupervised_sequential_glue.py:tiny \
        --config.data.dir=../shared/data

Stage 1 continues masked-LM training of the encoder on the WikiText-103 subset in
``data.dir/wikitext-103-subset`` (128-token blocks, whole-word masking) for 1,000 steps; stage 2
adapts it to GLUE SST-2 for 2,000 steps with ULMFiT's gradual unfreezing, discriminative learning
rates (factor 1/2.6) and the slanted triangular schedule. Not timed here: at MiniLM size it is
a CPU job of about an hour; ``:tiny`` (above) is the quick look.
"""

from jaxtl import config as config_lib
from jaxtl.configs import tiny
from jaxtl.regimes import unsupervised_sequential


def get_config(arg=None):
    tiny.check_arg(arg, __file__)
    c = config_lib.base_config()
    unsupervised_sequential.add_config(c)
    c.pretrain.corpus = "wikitext"
    c.pretrain.steps = 1000
    c.pretrain.block_size = 128
    c.pretrain.whole_word = True
    c.pretrain.optim.lr = 1e-4
    c.target.tasks = ("glue/sst2",)
    c.train.steps = 2000
    c.train.eval_every = 500
    c.optim.strategy = "gradual_unfreezing"
    c.optim.schedule = "stlr"
    c.optim.discriminative = 1 / 2.6
    c.optim.lr = 1e-4
    if arg == "tiny":
        tiny.shrink(c)
    return config_lib.finalize(c)
