"""ULMFiT (Howard & Ruder 2018): an AWD-LSTM LM on WikiText, fine-tuned as an LM on the target
task's own text, then as a classifier with concat pooling, gradual unfreezing, discriminative
learning rates and slanted triangular learning rates.

    python launch.py --regime=unsupervised_sequential \
        --config=configs/unsupervised_sequential_ulmfit.py --config.data.dir=../shared/data

Smoke-test size, same three stages, model and strategies (``:tiny``, sizes in
``configs/tiny.py``; the real data still needs ``data.dir``):

    python launch.py --regime=unsupervised_sequential \
        --config=configs/unsupervised_sequential_ulmfit.py:tiny --config.data.dir=../shared/data

The model is new (``model.name="new:jaxtl_awd_lstm,…"``, :mod:`jaxtl.models.scratch`): an
AWD-LSTM (:mod:`jaxtl.models.awd_lstm`) over the packaged MiniLM's WordPiece vocabulary — three
LSTM layers (400 units; the last one 200 = the embedding width, for the tied softmax),
DropConnect on the hidden-to-hidden matrices, embedding dropout and variational dropout on the
embeddings, between layers and on the output, all at half the AWD-LSTM rates (fastai's
``drop_mult=0.5``), all off at evaluation. Three stages, in ``plan.json`` as ``pretrain``,
``lm_finetune`` and ``adapt``:

1. ``pretrain``: general-domain causal LM on the WikiText-103 subset in ``data.dir`` (the
   ``wikitext`` corpus task; WikiText-2's train split is not in ``../shared/data``), 500 steps
   of 32 blocks of 64 tokens, Adam at 1e-3 (linear decay);
2. ``lm_finetune``: the same LM on the target task's own input text (``lm_finetune.corpus=""``:
   SST-2's train sentences; dev perplexity on its dev sentences), 150 steps with discriminative
   learning rates (each layer below the top at 1/2.6 of the one above,
   ``lm_finetune.optim.discriminative``) and STLR (``lm_finetune.optim.schedule=stlr``);
3. ``adapt``: SST-2 classification for 500 steps on a new head with concat pooling
   (``model.pooling=concat``: the last real token's state, the max and the mean over real
   tokens, [3 x 200]) -> 50 tanh units -> the classes (``model.head=linear``,
   ``model.head_hidden=50``), gradual unfreezing (``optim.strategy=gradual_unfreezing``: the
   head and the top layer first, one more layer per phase, the embeddings last), discriminative
   learning rates (``optim.discriminative=1/2.6``) and STLR (``optim.schedule=stlr``).

The paper's Table 7 ablations are key overrides: no target-domain LM fine-tuning
``--config.lm_finetune.steps=0``; full fine-tuning instead of gradual unfreezing
``--config.optim.strategy=finetune``; the last layer only ``--config.optim.strategy=
freeze_all_but_last``; chain-thaw ``--config.optim.strategy=chain_thaw``; no discriminative
fine-tuning ``--config.optim.discriminative=1.0`` (and ``lm_finetune.optim.discriminative``);
no STLR ``--config.optim.schedule=linear`` (and ``lm_finetune.optim.schedule``). Fewer labels:
``--config.data.max_train_examples=1000`` (it also caps the lines of the LM corpora). Measured
at real-data size, with shorter stages, through ``python experiments/seed_systems.py
--data-dir ../shared/data --seeds 0 1 2 --only ulmfit --stage1-steps 300 --steps 250``
(EXPERIMENTS.md, ULMFiT; stage 1 once, then with and without ``lm_finetune``, 3 seeds each) on
an idle 2-core Intel Xeon: 37 min; stage 1 took 12 min for 300 steps and ends at WikiText dev
perplexity 1,380 (test 1,400); each target run with LM fine-tuning 6.4-8 min, without about
1.5 min. SST-2 dev accuracy 50.9 in every run (the majority class), while the same classifier
from a random AWD-LSTM (``--config.pretrain.steps=0 --config.lm_finetune.steps=0``) reaches
60.7 +- 0.9: at this budget the LM's features are worse than random ones. Measured with the
``:tiny`` command above on the shared 2-core CPU (other jobs running, its 6 train and 3 eval programs
already in the compilation cache): 65 s wall, 22 s user (a cold cache adds about 150 s of
compilation on this loaded machine); WikiText dev perplexity 27,043, SST-2 text 20,744, SST-2
dev accuracy 0.5625 after 10 steps per stage (a smoke test). Differences from the paper: a smaller LSTM, the
WordPiece vocabulary, no BPTT state carried across blocks, a tanh (not ReLU + batch-norm) hidden
layer in the classifier.
"""

from jaxtl import config as config_lib
from jaxtl.configs import tiny
from jaxtl.regimes import unsupervised_sequential

AWD_LSTM = (
    "new:jaxtl_awd_lstm,tokenizer=minilm,embed_size=200,hidden_size=400,num_layers=3,"
    "embed_dropout=0.05,input_dropout=0.325,hidden_dropout=0.15,output_dropout=0.2,"
    "weight_dropout=0.25"
)


def get_config(arg=None):
    tiny.check_arg(arg, __file__)
    c = config_lib.base_config()
    unsupervised_sequential.add_config(c)
    c.model.name = AWD_LSTM
    c.pretrain.corpus = "wikitext"
    c.pretrain.steps = 500
    c.pretrain.block_size = 64
    c.pretrain.optim.lr = 1e-3
    c.pretrain.optim.schedule = "linear"
    c.lm_finetune.steps = 150
    c.lm_finetune.block_size = 64
    c.lm_finetune.optim.lr = 1e-3
    c.lm_finetune.optim.discriminative = 1 / 2.6
    c.lm_finetune.optim.schedule = "stlr"
    c.target.tasks = ("glue/sst2",)
    c.model.head = "linear"
    c.model.pooling = "concat"
    c.model.head_hidden = 50
    c.model.dropout = 0.1
    c.optim.strategy = "gradual_unfreezing"
    c.optim.discriminative = 1 / 2.6
    c.optim.schedule = "stlr"
    c.optim.lr = 2e-3
    c.train.steps = 500
    c.train.batch_size = 32
    c.train.eval_every = 250
    c.data.max_length = 64
    c.data.buckets = (32, 64)
    if arg == "tiny":
        tiny.shrink(c)
    return config_lib.finalize(c)
