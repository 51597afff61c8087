"""The configuration keys every regime honours, declared once.

Regime config files (``configs/<regime>.py``) start from ``base_config()`` and add their own
keys; the result is locked, so ``--config.KEY=VALUE`` with a key that does not exist is an error
that names it (ml_collections raises it), instead of a silently ignored typo.
"""

from __future__ import annotations

import ml_collections

from jaxtl import partition


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
    c.model.pooling = "cls"  # model.head=linear: cls | mean | last
    c.model.head_hidden = 0  # model.head=linear: >0 adds a tanh dense layer of this width
    c.model.tagger_bilstm = 0  # >0: BiLSTM (this hidden size) under the tagging head
    c.model.dropout = 0.1  # head dropout
    c.model.compute_dtype = "auto"  # auto (bf16 on GPU/TPU, f32 on CPU) | float32 | bfloat16
    c.model.init_from = ""  # a jaxtl workdir/checkpoint: params-only init where paths/shapes agree

    c.data = ml_collections.ConfigDict()
    c.data.dir = ""  # root of real datasets (GLUE layout etc.); builtin/* tasks need none
    c.data.max_length = 128
    c.data.buckets = (32, 64, 128)
    c.data.on_bad_row = "error"  # error | skip (counted and reported)
    c.data.max_train_examples = 0  # >0: use only the first N training examples of each task
    c.data.max_eval_examples = 0
    c.data.holdout_fraction = 0.1  # a task without a dev split selects on this share of train

    c.train = ml_collections.ConfigDict()
    c.train.steps = 300
    c.train.batch_size = 32
    c.train.eval_batch_size = 64
    c.train.eval_every = 100  # 0 = evaluate at the end of each stage only
    c.train.log_every = 10
    c.train.accum_steps = 1  # micro-batches per step (batch_size must divide evenly)
    c.train.early_stop_patience = 0
    c.train.save_best = True  # keep the best params per stage in best/ (the selected model)
    c.train.restore_best = False  # a later stage (and MT-DNN refinement) starts from them
    c.train.progress = True

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every_steps = 100  # 0 = at stage ends only
    c.checkpoint.keep = 2

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
    return c


def finalize(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Lock the key set (unknown override keys become errors) and return the config."""
    c.lock()
    return c
