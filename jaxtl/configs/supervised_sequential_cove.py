"""CoVe (McCann et al. 2017): a translation encoder's states as features for a target classifier.

    python launch.py --regime=supervised_sequential --config=configs/supervised_sequential_cove.py \\
        --config.data.dir=../shared/data

Smoke-test size, same stages and encoder (``:tiny``, sizes in ``configs/tiny.py`` plus a tiny
decoder and target vocabulary):

    python launch.py --regime=supervised_sequential \\
        --config=configs/supervised_sequential_cove.py:tiny --config.data.dir=../shared/data

Measured with exactly this command: 55 s wall on the shared 2-core CPU with other jobs running
(load average about 8; 25 s of CPU time); 10 MT steps give dev BLEU 0.08 and test BLEU 0.08 (an
untrained decoder: the smoke test shows the stages run, not translation), then SST-2 dev
accuracy 0.5625 with the frozen encoder.

Stage 1 (``source``): machine translation on Multi30k en→de (``multi30k``: train 29k pairs, dev
``val``, test ``test_2016_flickr``). The encoder is a new two-layer BiLSTM
(``model.name="new:jaxtl_bilstm,…"``, :mod:`jaxtl.models.scratch`; 300-d word embeddings,
150 units per direction) and the task's head is CoVe's attentional LSTM decoder
(``model.decoder``, :mod:`jaxtl.models.seq2seq`: Luong "general" attention over the top BiLSTM
layer, input feeding), trained by teacher forcing in the ordinary sharded step. English is read
with the packaged MiniLM's WordPiece tokenizer; German targets with a cased WordPiece of 8000
pieces trained on Multi30k's training targets (``model.decoder.vocab_size``; saved in
``<workdir>/target_tokenizer``), which decodes back to the original spelling and spacing. Dev
BLEU (sacrebleu on the detokenised text, greedy decoding; ``--config.model.decoder.beam=5`` for
beam search) selects the stage's best checkpoint and is reported with test BLEU.

Stage 2 (``target``): SST-2 with the encoder frozen (``optim.strategy=feature_extraction``); the
classifier reads ``model.representation=cove`` = ``[h_0 ; h_2]``, each token's input embedding
next to the top BiLSTM layer — CoVe's ``[GloVe(w); CoVe(w)]``, 600 wide per token — mean-pooled
into a one-hidden-layer classifier. Compare ``--config.model.representation=embeddings`` (the
input embeddings alone) to see what the translation encoder adds.

Deviations from the paper, stated: the input embeddings are learned during the MT stage from
random initialisation rather than fixed GloVe vectors (none are available offline here), over
MiniLM's uncased English WordPiece vocabulary; the references BLEU compares with are the test
targets as the German tokenizer decodes them (equal to the raw text except for targets cut at
``data.max_length``); the target classifier is a pooled MLP, not the paper's biattentive
classification network.

Run on real data with half the MT steps (``experiments/seed_systems.py --only cove
--stage1-steps 2000``, EXPERIMENTS.md "CoVe"): 0.73-0.8 MT steps/s on a 2-core AMD EPYC, so
this config's 4000 steps take about 90 minutes there (0.65 steps/s on a 2-core Intel Xeon
with the test suite beside it); after 2000 steps dev BLEU 6.64 and test BLEU 6.82, and SST-2
dev accuracy 63.9 +- 0.6 with CoVe vs 64.3 +- 0.2 with the embeddings alone (3 seeds, a head
each; the 1500 SST-2 steps read features of the frozen encoder cached once per setting, 98 s to
compute with the BiLSTM).
"""

from jaxtl import config as config_lib
from jaxtl.configs import tiny
from jaxtl.regimes import supervised_sequential

ENCODER = (
    "new:jaxtl_bilstm,tokenizer=minilm,embed_size=300,hidden_size=150,num_layers=2,dropout=0.2"
)


def get_config(arg=None):
    tiny.check_arg(arg, __file__)
    c = config_lib.base_config()
    supervised_sequential.add_config(c)
    c.model.name = ENCODER
    c.model.decoder.kind = "lstm"
    c.model.decoder.embed_size = 300
    c.model.decoder.hidden_size = 300
    c.model.decoder.num_layers = 1
    c.model.decoder.dropout = 0.2
    c.model.decoder.vocab_size = 8000
    c.model.representation = "cove"
    c.model.head = "linear"
    c.model.pooling = "mean"
    c.model.head_hidden = 300
    c.data.max_length = 64
    c.data.buckets = (32, 64)
    c.source.tasks = ("multi30k",)
    c.source.steps = 4000
    c.source.eval_every = 1000
    c.source.optim.lr = 1e-3
    c.source.optim.weight_decay = 0.0
    c.target.tasks = ("sst2",)
    c.train.steps = 1500
    c.train.batch_size = 64
    c.train.eval_every = 500
    c.optim.strategy = "feature_extraction"
    c.optim.lr = 1e-3
    if arg == "tiny":
        tiny.shrink(c)
        c.model.decoder.embed_size = c.model.decoder.hidden_size = c.model.head_hidden = 32
        c.model.decoder.vocab_size = 1000
    return config_lib.finalize(c)
