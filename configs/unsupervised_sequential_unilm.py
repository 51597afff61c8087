"""UNILM (Dong et al. 2019): one Transformer pretrained under four attention masks, then adapted.

    python launch.py --regime=unsupervised_sequential \
        --config=configs/unsupervised_sequential_unilm.py --config.data.dir=../shared/data

Smoke-test size, same stages (``:tiny``, sizes in ``configs/tiny.py``; offline: the built-in
corpus and sentiment task, no ``data.dir``):

    python launch.py --regime=unsupervised_sequential \
        --config=configs/unsupervised_sequential_unilm.py:tiny

Stage 1 (``pretrain``, ``pretrain.objective=unilm``, :mod:`jaxtl.objectives.unilm`) trains the
encoder and its tied MLM head on rows ``[CLS] source [SEP] target [SEP]`` made of consecutive
sentences of the corpus, 15% of the tokens masked; each batch gets one attention mask, drawn
with the paper's proportions (``pretrain.unilm``): bidirectional 1/3, sequence-to-sequence 1/3
(source bidirectional, target sees the source and its own left), left-to-right 1/6,
right-to-left 1/6 (``--config.pretrain.unilm.right_to_left=0`` drops it). Dev pseudo-perplexity
is measured on the corpus' dev split under the same mixture. Stage 2 (``adapt``) drops the LM
head and fine-tunes the pretrained encoder (in memory, the stage-1 params; also saved as the
stage-1 checkpoint, usable by a later run through ``model.init_from``) with a new classifier.

The full run pretrains for 1,000 steps on the WikiText-103 subset in ``data.dir`` (the
``wikitext`` corpus task: its dev split is the WikiText-103/-2 validation articles; WikiText-2's
own train split is not in ``../shared/data``, see its SOURCES.md) with 128-token rows, then
adapts to GLUE SST-2 for 1,000 steps. Not timed here (a CPU job of about an hour at MiniLM
size); ``:tiny`` uses the offline built-in corpus and ``builtin/sentiment`` instead.
"""

from configs import tiny
from jaxtl import config as config_lib
from jaxtl.regimes import unsupervised_sequential


def get_config(arg=None):
    tiny.check_arg(arg, __file__)
    c = config_lib.base_config()
    unsupervised_sequential.add_config(c)
    c.pretrain.objective = "unilm"
    c.pretrain.corpus = "wikitext"
    c.pretrain.steps = 1000
    c.pretrain.block_size = 128
    c.pretrain.eval_every = 500
    c.pretrain.optim.lr = 1e-4
    c.target.tasks = ("glue/sst2",)
    c.train.steps = 1000
    c.train.batch_size = 16
    c.train.eval_every = 500
    c.optim.lr = 1e-4
    if arg == "tiny":
        # Offline, like the other regimes' default configs: no data.dir needed.
        c.pretrain.corpus = "builtin/corpus"
        c.target.tasks = ("builtin/sentiment",)
        tiny.shrink(c)
    return config_lib.finalize(c)
