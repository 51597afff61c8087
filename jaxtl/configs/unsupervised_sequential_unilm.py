"""UNILM (Dong et al. 2019): one Transformer pretrained under four attention masks, then adapted.

    python launch.py --regime=unsupervised_sequential \
        --config=configs/unsupervised_sequential_unilm.py --config.data.dir=../shared/data

Smoke-test size, same stages and data (``:tiny``, sizes in ``configs/tiny.py``; the real data
still needs ``data.dir``; ``--config.pretrain.corpus=builtin/corpus
--config.target.tasks="('builtin/sentiment',)"`` runs it offline):

    python launch.py --regime=unsupervised_sequential \
        --config=configs/unsupervised_sequential_unilm.py:tiny --config.data.dir=../shared/data

Stage 1 (``pretrain``, ``pretrain.objective=unilm``, :mod:`jaxtl.objectives.unilm`) trains the
encoder and its tied MLM head on rows ``[CLS] source [SEP] target [SEP]`` made of consecutive
sentences of the corpus, 15% of the tokens masked; each batch gets one attention mask, drawn
with the paper's proportions (``pretrain.unilm``): bidirectional 1/3, sequence-to-sequence 1/3
(source bidirectional, target sees the source and its own left), left-to-right 1/6,
right-to-left 1/6 (``--config.pretrain.unilm.right_to_left=0`` drops it). Dev pseudo-perplexity
is measured on the corpus' dev split under the same mixture. Stage 2 (``adapt``) drops the LM
head and fine-tunes the pretrained encoder (in memory, the stage-1 params; also saved as the
stage-1 checkpoint, usable by a later run through ``model.init_from``) with a new classifier.

Measured with exactly the ``:tiny`` command on the shared 2-core CPU (117 s wall with other jobs
running, 54 s of it XLA compilation): UNILM training loss 10.26 at step 1 -> 7.61 at step 10
(MiniLM ships without an MLM head: a fresh one); WikiText dev pseudo-perplexity 4285.75 under
the mask mixture; SST-2 dev accuracy 0.5625 after 10 adaptation steps at lr 1e-4 (a smoke test:
too few steps to learn the task).

The full run pretrains for 1,000 steps on the WikiText-103 subset in ``data.dir`` (the
``wikitext`` corpus task: its dev split is the WikiText-103/-2 validation articles; WikiText-2's
own train split is not in ``../shared/data``, see its SOURCES.md) with 128-token rows, then
adapts to GLUE SST-2 for 1,000 steps. Run on real data with smaller budgets
(``experiments/seed_systems.py --only unilm --stage1-steps 200 --steps 150 --batch-size 16
--max-length 64``, EXPERIMENTS.md "UNILM"): 200 UNILM steps took 29 minutes on a 2-core AMD
EPYC with dev and test pseudo-perplexity (604 and 579); SST-2 dev accuracy after the stage
85.3 +- 0.7 against 85.5 +- 0.6 for MiniLM as packaged (3 seeds, Welch p = 0.74).
"""

from jaxtl import config as config_lib
from jaxtl.configs import tiny
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
        tiny.shrink(c)
    return config_lib.finalize(c)
