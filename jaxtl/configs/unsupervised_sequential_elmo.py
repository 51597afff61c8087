"""ELMo (Peters et al. 2018): a BiLSTM bidirectional LM pretrained on WikiText, then its frozen
layers, mixed, feed a CoNLL-2003 NER tagger.

    python launch.py --regime=unsupervised_sequential \
        --config=configs/unsupervised_sequential_elmo.py --config.data.dir=../shared/data

Smoke-test size, same stages, model and strategy (``:tiny``, sizes in ``configs/tiny.py``;
the real data still needs ``data.dir``):

    python launch.py --regime=unsupervised_sequential \
        --config=configs/unsupervised_sequential_elmo.py:tiny --config.data.dir=../shared/data

The model is new (``model.name="new:jaxtl_bilstm,…"``, :mod:`jaxtl.models.scratch`): word
embeddings over the packaged MiniLM's WordPiece vocabulary (30,522 pieces), two BiLSTM layers of
256 units per direction with *independent* forward and backward stacks
(``independent_directions=1``), so it is a biLM: ``pretrain.objective=auto`` picks ``bilm``
(:mod:`jaxtl.objectives.language_model`), the forward LM predicts token t+1 from tokens <= t,
the backward LM token t-1 from tokens >= t, both through one full softmax tied to the input
embeddings (:class:`jaxtl.models.bilstm.BiLMHead`), loss = the mean of the two directions.
Stage 1 (``pretrain``) trains it for 400 steps of 32 blocks of 64 tokens on the WikiText-103
subset in ``data.dir`` (the ``wikitext`` corpus task; its dev split is the WikiText-103/-2
validation articles — WikiText-2's own train split is not in ``../shared/data``, see its
SOURCES.md); dev perplexity (both directions together) is reported. Stage 2 (``adapt``) freezes
the biLM (``optim.strategy=feature_extraction``) and feeds the tagger ELMo's representation
(``model.representation=elmo``: ``gamma * sum_j softmax(w)_j h_j`` over the token layer and both
BiLSTM layers, concatenated with the token layer, the model's own context-free embeddings);
``w`` and ``gamma`` train with the tagger, a two-layer BiLSTM of 128 units
(``model.tagger_bilstm``) and a linear layer, for 600 steps on CoNLL-2003. Compare
``--config.model.representation=embeddings`` (static embeddings only) or ``=scalar_mix``. The
stage-1 params are the stage-1 checkpoint, which a later run can start from with
``--config.model.init_from=<workdir>`` and ``--config.pretrain.steps=0``.

Measured at full size through ``python experiments/seed_systems.py --data-dir ../shared/data
--seeds 0 1 2 --only elmo`` (EXPERIMENTS.md, ELMo; this config, stage 1 once, six tagger runs,
each seed with its own tagger initialisation) on an idle 2-core CPU: 42 min in all; stage 1
took 23 min and ends at WikiText dev perplexity 980.2, test 982.0; the six tagger runs 19 min.
CoNLL-2003 dev span F1 after 600 steps, 3 seeds: 29.7 ± 0.5 with ``representation=elmo``,
28.9 ± 0.2 with ``=embeddings`` (test 31.6 / 31.2; Welch p = 0.12): at this budget the biLM is
too little trained for its layers to help clearly.

Measured with the ``:tiny`` command above on the shared 2-core CPU (other jobs running; cold
compilation cache, 54 s compiling): 2 min 44 s wall, 41 s user. After 10 steps: WikiText dev
perplexity 29,834 (both directions; a smoke test, not a language model yet), CoNLL-2003 token
accuracy 0.765 dev / 0.843 test, span F1 0.000.
"""

from jaxtl import config as config_lib
from jaxtl.configs import tiny
from jaxtl.regimes import unsupervised_sequential

BILM = (
    "new:jaxtl_bilstm,tokenizer=minilm,embed_size=128,hidden_size=256,num_layers=2,"
    "independent_directions=1,dropout=0.1"
)


def get_config(arg=None):
    tiny.check_arg(arg, __file__)
    c = config_lib.base_config()
    unsupervised_sequential.add_config(c)
    c.model.name = BILM
    c.pretrain.corpus = "wikitext"
    c.pretrain.steps = 400
    c.pretrain.block_size = 64
    c.pretrain.optim.lr = 1e-3
    c.pretrain.optim.schedule = "linear"
    c.target.tasks = ("conll2003",)
    c.model.representation = "elmo"
    c.model.tagger_bilstm = 128
    c.model.dropout = 0.3
    c.optim.strategy = "feature_extraction"
    c.optim.lr = 1e-3
    c.train.steps = 600
    c.train.batch_size = 32
    c.train.eval_every = 200
    c.data.max_length = 128  # CoNLL sentences: no word cut off
    c.data.buckets = (32, 64, 128)
    if arg == "tiny":
        tiny.shrink(c)
    return config_lib.finalize(c)
