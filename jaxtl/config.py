"""The configuration keys every regime honours, declared once.

Regime config files (``configs/<regime>.py``) start from ``base_config()`` and add their own
keys; the result is locked, so ``--config.KEY=VALUE`` with a key that does not exist is an error
that names it (ml_collections raises it), instead of a silently ignored typo.
"""

from __future__ import annotations

import os
import re

import ml_collections

from jaxtl import class_weights, partition, runtime, thresholds


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.model = ml_collections.ConfigDict()
    c.model.name = "minilm"  # HF hub id, local HF directory, or "minilm" (the packaged encoder)
    c.model.allow_pickle = False  # accept pytorch_model.bin (pickle) checkpoints
    # What the encoder hands the heads: embeddings | last | second_to_last | sum_last_four |
    # concat_last_four | scalar_mix.
    c.model.representation = "last"
    # Task heads: auto = the encoder family's transformers head (BERT: pretrained pooler +
    # classifier; RoBERTa / ELECTRA: classifier.dense + out_proj; GPT-2: score on the last
    # token; tagging: a linear classifier per token), so export to transformers is exact;
    # linear = jaxtl's linear head, shaped by pooling and head_hidden.
    c.model.head = "auto"
    # model.head=linear: auto (the last real token for causal encoders such as GPT-2 and Llama,
    # the first token otherwise) | cls | mean | last | concat (ULMFiT: [last; max; mean])
    c.model.pooling = "auto"
    c.model.head_hidden = 0  # model.head=linear: >0 adds a tanh dense layer of this width
    c.model.tagger_bilstm = 0  # >0: BiLSTM (this hidden size) under the tagging head
    c.model.dropout = 0.1  # head dropout
    # A translation task's head: the decoder of an encoder-decoder (jaxtl.models.seq2seq) over
    # the encoder's last hidden states. lstm = attentional LSTM (CoVe), transformer (MASS);
    # evaluation decodes greedily (beam=1) or by beam search, length-normalised by alpha.
    c.model.decoder = ml_collections.ConfigDict()
    c.model.decoder.kind = "lstm"  # lstm | transformer
    # Target vocabulary: 0 = the model's tokenizer; N > 0 = a cased WordPiece of N pieces trained
    # on the translation tasks' training targets, kept in <workdir>/target_tokenizer.
    c.model.decoder.vocab_size = 0
    c.model.decoder.embed_size = 300  # lstm: target word embeddings
    c.model.decoder.hidden_size = 300
    c.model.decoder.num_layers = 2
    c.model.decoder.num_heads = 4  # transformer
    c.model.decoder.intermediate_size = 1024  # transformer
    c.model.decoder.dropout = 0.1
    c.model.decoder.beam = 1
    c.model.decoder.alpha = 1.0
    c.model.compute_dtype = "auto"  # auto (bf16 on GPU/TPU, f32 on CPU) | float32 | bfloat16
    c.model.init_from = ""  # a jaxtl workdir/checkpoint: params-only init where paths/shapes agree
    # Parameter paths (regular expressions matched from the start, e.g. "heads/rte/") that
    # init_from leaves freshly initialised: a new head per seed on a shared checkpoint.
    c.model.init_from_skip = ()

    c.data = ml_collections.ConfigDict()
    c.data.dir = ""  # root of real datasets (GLUE layout etc.); builtin/* tasks need none
    c.data.max_length = 128
    c.data.buckets = (32, 64, 128)
    # qa tasks: a context longer than a row is cut into windows overlapping by doc_stride tokens
    # (0: a quarter of max_length); an answer is at most max_answer_length tokens; with
    # null_answers, "no answer" where its score beats the best span's by more than
    # null_score_threshold (run_qa's max_answer_length and null_score_diff_threshold).
    c.data.doc_stride = 0
    c.data.max_answer_length = 30
    c.data.null_score_threshold = 0.0
    # Several examples per row (jaxtl.data.packing; train.batch_size then counts rows) where the
    # encoder runs them exactly; padded batches for the BiLSTM family and other inexact cases.
    c.data.packing = True
    c.data.on_bad_row = "error"  # error | skip (counted and reported)
    c.data.max_train_examples = 0  # >0: use only the first N training examples of each task
    c.data.max_eval_examples = 0
    c.data.holdout_fraction = 0.1  # a task without a dev split selects on this share of train
    # Tokenised training splits of token_cache_min_rows examples or more are kept on disk and
    # read by row (jaxtl.data.token_cache): auto (~/.cache/jaxtl/tokens) | off | a folder.
    c.data.token_cache = "auto"
    c.data.token_cache_min_rows = 100_000
    # Processes that tokenise such a split (sentences, pairs): 0 = one per CPU core, at most 8;
    # 1 = the run's own process alone (jaxtl.data.tokenize_worker says why processes).
    c.data.tokenize_processes = 0

    c.train = ml_collections.ConfigDict()
    c.train.steps = 300
    # >0: the stage train.steps drives (multitask, target, adapt, joint) makes this many passes
    # over its tasks' training batches instead, train.steps then unused (jaxtl.stages.epoch_steps).
    c.train.epochs = 0.0
    c.train.batch_size = 32
    c.train.eval_batch_size = 64
    c.train.eval_every = 100  # 0 = evaluate at the end of each stage only
    # True: the stage train.steps drives evaluates (and selects) once per pass over its data
    # instead, as the Trainer's eval_strategy="epoch" and Keras' fit do.
    c.train.eval_per_epoch = False
    c.train.log_every = 10
    c.train.accum_steps = 1  # micro-batches per step (batch_size must divide evenly)
    c.train.early_stop_patience = 0
    # Label smoothing of the classification and tagging losses (transformers' Trainer
    # label_smoothing_factor): the target puts 1 - s on the gold class and s spread evenly over
    # all classes. Not LM streams, regression or multilabel.
    c.train.label_smoothing = 0.0
    # Per-class loss weights for imbalanced labels (PyTorch's CrossEntropyLoss weight /
    # BCEWithLogitsLoss pos_weight): "" | balanced | NAME=balanced,NAME=CLASS:W|CLASS:W
    # (jaxtl.class_weights).
    c.train.class_weights = ""
    # A multilabel task's class applies where its probability exceeds this, in its metrics and
    # prediction records (transformers' and scikit-learn's 0.5 by default; a lower one favours
    # recall: GoEmotions' baseline uses 0.3). An exported model gives probabilities only.
    c.train.multilabel_threshold = 0.5
    # True: each multilabel class gets its own threshold, the one with the best F1 on the
    # selection split (dev) with the selected params, and a qa task with null_answers the
    # "no answer" threshold with the best dev F1 (data.null_score_threshold is where it starts);
    # saved in thresholds.json (jaxtl.thresholds)
    c.train.tune_thresholds = False
    # What the tuned thresholds maximise on dev: "macro_f1" (each class its best F1) or
    # "micro_f1" (the pooled F1, a multilabel task's main metric: chosen together)
    c.train.threshold_objective = "macro_f1"
    c.train.save_best = True  # keep the best params per stage in best/ (the selected model)
    c.train.restore_best = False  # a later stage (and MT-DNN refinement) starts from them
    c.train.progress = True

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every_steps = 100  # 0 = at stage ends only
    c.checkpoint.keep = 2
    # True: a checkpoint is written (and its checksums hashed) in the background while training
    # goes on; the next save, the run's end and a stop by signal or error wait for it
    c.checkpoint.async_save = True
    # True: the best params an improving evaluation sets (best/) are written in the background
    # too; a checkpoint then waits for those of earlier evaluations, and a resume rewrites those
    # of its own step from its params if they were cut short. Off: on a 2-core CPU, where the
    # write competes with the training step for the same cores, two benchmark runs disagreed
    # on whether it saves time (BENCHMARKS.md section 13), and it holds a copy of the params.
    c.checkpoint.async_best = False

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1  # -1 = the rest of the devices
    c.mesh.fsdp = 1
    c.mesh.tensor = 1

    c.distributed = ml_collections.ConfigDict()
    c.distributed.enabled = False  # jax.distributed.initialize(): TPU VM / SLURM env, or below
    c.distributed.coordinator = ""  # host:port of process 0
    c.distributed.num_processes = 0
    c.distributed.process_id = -1

    c.optim = partition.default_optim_config()
    # Export the selected model here: the encoder (AutoModel) at the root, one transformers task
    # model per task in <export_dir>/<task>/, a PEFT adapter for LoRA (jaxtl.export.export_run).
    c.export_dir = ""
    # Persistent XLA compilation cache: auto (~/.cache/jaxtl/xla) | off | a folder.
    c.compile_cache = "auto"
    # Dropout's random bits: auto (JAX's partitionable threefry when the run has several
    # devices, the classic, cheaper one on a single device) | true | false. The two draw other
    # bits; jaxtl.runtime.partitionable_rng.
    c.prng_partitionable = "auto"
    # CPU kernels of jaxtl's steps: auto (YNNPACK's for train steps on at most
    # runtime.YNNPACK_MAX_TOKENS tokens, XLA's own for everything else: what measured faster
    # on Intel and AMD CPUs) |
    # xla (XLA's own fused loops and Eigen's matmul) | ynnpack (the YNNPACK library fusions
    # jaxlib enables by default). No effect on GPU/TPU; jaxtl.runtime.compiler_options.
    c.cpu_kernels = "auto"

    # A stage whose encoder is frozen (optim.strategy=feature_extraction) runs it without dropout
    # and computes its features once (jaxtl.features): auto (on disk where the stage can use a
    # cache) | disk | memory | off (the encoder runs every step).
    c.features = ml_collections.ConfigDict()
    c.features.cache = "auto"
    c.features.dir = ""  # disk cache folder; "" = <workdir>/features
    c.features.encoder_dropout = False  # True: a frozen encoder keeps its dropout (no cache)
    # Resuming a workdir with a config that changes the experiment is refused unless this is set
    # (jaxtl.workdir.check_resume lists the keys that may change freely).
    c.allow_config_change = False
    return c


def finalize(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Lock the key set (unknown override keys become errors) and return the config."""
    c.lock()
    return c


# Config keys naming a local path that a finished run reads again (``--predict``, ``--export``
# and ``jaxtl.load`` rebuild the model from ``model.name``), possibly from another folder.
LOCAL_PATH_KEYS = ("model.name",)


def absolute_local_paths(c: ml_collections.ConfigDict) -> None:
    """Make each :data:`LOCAL_PATH_KEYS` value that is a relative path to an existing local
    folder absolute, so that ``config.json`` still names it from any other folder (the run
    loads it from there: a local folder wins over a hub id of the same name)."""
    from jaxtl.models.hf import SHORT_NAMES  # "minilm" is the packaged model, folder or not

    for key in LOCAL_PATH_KEYS:
        section, name = key.rsplit(".", 1)
        value = c[section][name]
        if (isinstance(value, str) and value and value not in SHORT_NAMES
                and not os.path.isabs(value) and os.path.isdir(value)):  # fmt: skip
            c[section][name] = os.path.abspath(value)


def stage_optims(c: ml_collections.ConfigDict) -> dict[str, ml_collections.ConfigDict]:
    """Every stage's ``optim`` block in a config, keyed by where it sits, earlier stages first
    (the order the regimes apply their strategies' surgery in)."""
    out = {
        f"{s}.optim": c[s].optim
        for s in ("source", "pretrain", "lm_finetune")
        if s in c and "optim" in c[s]
    }
    out["optim"] = c.optim
    return out


def validate(c: ml_collections.ConfigDict) -> None:
    """Check enumerated keys, numeric ranges and every stage's ``optim`` block right after
    parsing, before any model or data is loaded: one-line errors naming the key, the value and
    the valid choices."""
    import math

    from jaxtl.data.mixture import SCHEMES
    from jaxtl.models.representation import KINDS as REPRESENTATIONS
    from jaxtl.partition.phases import check as check_optim

    def choice(key: str, value: object, allowed: tuple) -> None:
        if value not in allowed:
            raise ValueError(f"{key}={value!r}: choose one of {', '.join(map(str, allowed))}")

    choice("model.representation", c.model.representation, REPRESENTATIONS)
    # A tuple (ml_collections refuses a str here; on the command line one pattern is a 1-tuple).
    skip = c.model.get("init_from_skip", ())
    if skip and not c.model.init_from:
        raise ValueError(f"model.init_from_skip={tuple(skip)!r}: set model.init_from as well "
                         "(the skip names what not to load from it)")  # fmt: skip
    for pattern in skip:
        try:
            re.compile(pattern)
        except (re.error, TypeError) as e:
            raise ValueError(
                f"model.init_from_skip: {pattern!r} is not a regular expression: {e}"
            ) from None
    choice("model.head", c.model.head, ("auto", "linear"))
    choice("model.decoder.kind", c.model.decoder.kind, ("lstm", "transformer"))
    if int(c.model.decoder.beam) < 1:
        raise ValueError(f"model.decoder.beam={c.model.decoder.beam}: must be >= 1")
    from jaxtl.features import validate as check_features

    choice("model.pooling", c.model.pooling, ("auto", "cls", "mean", "last", "concat"))
    choice("model.compute_dtype", c.model.compute_dtype, ("auto", "float32", "bfloat16"))
    choice("data.on_bad_row", c.data.on_bad_row, ("error", "skip"))
    choice("data.packing", c.data.packing, (True, False))
    choice("prng_partitionable", str(c.get("prng_partitionable", "auto")).lower(),
           ("auto", "true", "false"))  # fmt: skip
    choice("cpu_kernels", str(c.get("cpu_kernels", "auto")).lower(), runtime.CPU_KERNELS)
    if "mixture" in c:
        choice("mixture.scheme", c.mixture.scheme, SCHEMES)
    for key in ("train.steps", "data.max_train_examples", "data.max_eval_examples",
                "data.token_cache_min_rows", "data.tokenize_processes",
                "train.eval_every", "checkpoint.every_steps", "train.early_stop_patience"):  # fmt: skip
        section, name = key.split(".")
        if int(c[section][name]) < 0:
            raise ValueError(f"{key}={c[section][name]}: must be >= 0")
    t = c.train
    if not 0.0 <= float(t.get("label_smoothing", 0.0)) < 1.0:
        raise ValueError(f"train.label_smoothing={t.label_smoothing}: must be in [0, 1)")
    class_weights.parse(t.get("class_weights", ""))  # its syntax; names once the data is read
    if not 0.0 < float(t.get("multilabel_threshold", 0.5)) < 1.0:
        raise ValueError(f"train.multilabel_threshold={t.multilabel_threshold}: must be in (0, 1)")
    objective = t.get("threshold_objective", "macro_f1")
    if objective not in thresholds.OBJECTIVES:
        raise ValueError(f"train.threshold_objective={objective!r}: one of "
                         f"{', '.join(repr(o) for o in thresholds.OBJECTIVES)}")  # fmt: skip
    for section in ("train", "source", "pretrain", "lm_finetune"):  # each stage's epochs
        if section in c and "epochs" in c[section] and not float(c[section].epochs) >= 0:
            raise ValueError(f"{section}.epochs={c[section].epochs}: must be >= 0 (0 = "
                             f"{section}.steps steps)")  # fmt: skip
    for key, value in (("train.batch_size", t.batch_size), ("train.eval_batch_size",
                       t.eval_batch_size), ("train.accum_steps", t.accum_steps),
                       ("train.log_every", t.log_every), ("data.max_length", c.data.max_length)):  # fmt: skip
        if int(value) < 1:
            raise ValueError(f"{key}={value}: must be >= 1")
    buckets = tuple(c.data.buckets)
    if not buckets or min(int(b) for b in buckets) < 1:
        raise ValueError(f"data.buckets={buckets}: must be one or more lengths >= 1")
    if int(c.data.max_length) > max(buckets):
        # Every example is cut to max_length and padded (or packed) into a bucket's rows: a
        # longer example would have no row to go in.
        raise ValueError(
            f"data.max_length={c.data.max_length} is longer than the largest of data.buckets="
            f"{buckets}: add a bucket (--config.data.buckets='{(*buckets, int(c.data.max_length))}')"
            f" or lower data.max_length"
        )
    if t.batch_size % t.accum_steps:
        raise ValueError(
            f"train.batch_size={t.batch_size} is not divisible by train.accum_steps={t.accum_steps}"
        )
    for where, optim in stage_optims(c).items():
        try:
            check_optim(optim)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        if not (math.isfinite(float(optim.lr)) and float(optim.lr) >= 0):
            raise ValueError(f"{where}.lr={optim.lr}: must be finite and >= 0")
    check_features(c)
