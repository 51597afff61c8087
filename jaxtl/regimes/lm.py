"""What the two unlabelled-source regimes share: an encoder with its LM head, LM data feeds with
per-step MLM masking, token noise for consistency training, and head-freezing rules.

- :func:`load_lm_model`: the encoder plus its tied LM head (BERT-family MLM head, GPT-2's tied
  CLM head). The head comes from the checkpoint when it has one (``cls.predictions`` …), else it
  is freshly initialised (the packaged all-MiniLM-L6-v2 ships without one); ``from_scratch``
  builds a random encoder from the checkpoint's config instead of loading its weights.
- :func:`lm_task_data`: a corpus task packed into fixed-length blocks
  (:func:`jaxtl.data.tokenize.pack_corpus`) as a :class:`~jaxtl.regimes.common.TaskData` keyed
  ``lm`` (the key ``models.save_pretrained`` exports an LM head under). MLM training batches are
  masked by :class:`MaskedBatches` with a numpy Generator seeded by ``(seed, epoch, position)``
  of the wrapped iterator, so a restored iterator reproduces the exact masks; dev batches are
  masked once with a fixed seed, so dev perplexity is comparable across evaluations.
- MLM "perplexity" is exp(mean cross-entropy over the masked positions) — a pseudo-perplexity,
  comparable between runs with the same masking rate, not with a causal LM's perplexity.

The Trainer selects checkpoints on "higher is better"; perplexity is the other way round, so LM
evaluation sets carry no main metric (:func:`report_only`): reported, never selected on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from jaxtl import models
from jaxtl import step as step_lib
from jaxtl.data import batching, tasks, tokenize
from jaxtl.models import hf
from jaxtl.models.registry import family as get_family
from jaxtl.regimes import common
from jaxtl.regimes.common import freeze_rules, heads_pattern  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

LM_KEY = hf.LM_HEAD  # "lm": heads/lm/... and the head save_pretrained exports
OBJECTIVES = ("auto", "mlm", "clm")


# ------------------------------------------------------------------------------------ model
@dataclasses.dataclass
class LMModel:
    encoder: nnx.Module
    head: nnx.Module  # MLMHead | CLMHead, called as head(last_hidden, encoder.tied_embedding())
    tokenizer: Any
    hf_config: dict
    head_pretrained: bool  # False: the checkpoint had no LM head, this one is freshly initialised
    from_scratch: bool


def _tensor_names(path) -> set[str] | None:
    """Names of a checkpoint's tensors without reading them (None: only a pickle checkpoint)."""
    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if single.is_file():
        from safetensors import safe_open

        with safe_open(str(single), framework="numpy") as f:
            names = set(f.keys())
    elif index.is_file():
        names = set(json.loads(index.read_text()).get("weight_map", {}))
    else:
        return None
    # Old TF-converted checkpoints: the loader renames LayerNorm gamma/beta the same way.
    return {re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", n) for n in names} | {
        re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", n) for n in names
    }


def load_lm_model(config: ml_collections.ConfigDict, *, from_scratch: bool = False) -> LMModel:
    """The encoder of ``config.model.name`` with a tied LM head (see the module docstring)."""
    name = config.model.name
    path = hf.resolve(name)
    hf_config = hf.read_config(path)
    fam = get_family(hf_config["model_type"], where=str(path / "config.json"))
    if fam.lm_head is None or fam.lm_key_map is None:
        raise ValueError(
            f"model.name={name!r}: model_type {fam.model_type!r} has no LM head, so it cannot be "
            "pretrained on unlabelled text here (use a bert/roberta/gpt2 checkpoint)"
        )
    dtype = common.compute_dtype(config)
    rngs = nnx.Rngs(config.seed)
    if from_scratch:
        encoder = models.build_encoder(fam.model_type, hf_config, rngs=rngs, dtype=dtype)
        head = fam.lm_head(encoder.cfg, rngs=rngs)
        log.info("%s: random encoder and LM head from its config.json (from scratch)", name)
        return LMModel(encoder, head, hf.load_tokenizer(path), hf_config, False, True)
    names = _tensor_names(path)
    cfg = fam.config_from_hf(hf_config)
    wanted = [r.hf for r in fam.lm_key_map(cfg)]
    has_head = names is None or all(w in names for w in wanted)
    pre = models.from_pretrained(
        path, allow_pickle=config.model.allow_pickle, dtype=dtype, load_lm_head=has_head
    )
    if has_head:
        encoder, head = pre.model.encoder, pre.model.heads[LM_KEY]
    else:
        encoder = pre.model
        head = fam.lm_head(encoder.cfg, rngs=rngs)
        log.info("%s has no LM head (%s...): a fresh one is initialised", name, wanted[0])
    return LMModel(encoder, head, pre.tokenizer, pre.hf_config, has_head, False)


def objective_for(encoder: nnx.Module, objective: str) -> str:
    """``auto``: causal LM for GPT-2, masked LM for the BERT family."""
    if objective not in OBJECTIVES:
        raise ValueError(f"LM objective must be one of {OBJECTIVES}, got {objective!r}")
    if objective == "auto":
        return "clm" if encoder.family == "gpt2" else "mlm"
    if objective == "mlm" and encoder.family == "gpt2":
        raise ValueError("objective 'mlm' needs a bidirectional encoder; GPT-2 is causal: use clm")
    if objective == "clm" and encoder.family != "gpt2":
        raise ValueError(
            f"objective 'clm' needs a causal encoder; {encoder.family!r} attends both ways "
            "(a next-token loss would be trivial): use mlm"
        )
    return objective


# ------------------------------------------------------------------------------------ data
@dataclasses.dataclass(frozen=True)
class Masking:
    """BERT masking settings for :func:`jaxtl.data.tokenize.mask_tokens`."""

    mask_id: int
    vocab_size: int
    special_ids: np.ndarray
    prob: float = 0.15
    whole_word: bool = False
    continuation: np.ndarray | None = None

    @classmethod
    def for_tokenizer(
        cls, tokenizer: Any, vocab_size: int, *, prob: float = 0.15, whole_word: bool = False
    ) -> Masking:
        if tokenizer.mask_token_id is None:
            raise ValueError("MLM needs a tokenizer with a mask token ([MASK] / <mask>)")
        if not 0.0 < prob < 1.0:
            raise ValueError(f"MLM masking probability must be in (0, 1), got {prob}")
        cont = tokenize.continuation_table(tokenizer) if whole_word else None
        # Random replacements must be ids the embedding table has.
        vocab = min(int(vocab_size), len(tokenizer))
        return cls(
            int(tokenizer.mask_token_id), vocab, tokenize.special_ids(tokenizer), float(prob),
            bool(whole_word), cont,
        )  # fmt: skip

    def apply(self, batch: dict[str, np.ndarray], rng: np.random.Generator):
        return tokenize.mask_tokens(
            batch,
            rng,
            mask_id=self.mask_id,
            vocab_size=self.vocab_size,
            special_ids=self.special_ids,
            prob=self.prob,
            whole_word=self.whole_word,
            continuation=self.continuation,
        )


class MaskedBatches:
    """An MLM training iterator: the wrapped iterator's batches, freshly masked each time.

    The masks of a batch depend only on ``(seed, epoch, position)`` of the wrapped iterator at
    the moment it is drawn, and that position is what :meth:`state` saves: after
    :meth:`restore` the same batches come back with the same masks, with no RNG state to keep.
    """

    def __init__(self, inner: batching.TrainBatches, masking: Masking, seed: int):
        self.inner = inner
        self.masking = masking
        self.seed = int(seed)

    def __iter__(self) -> MaskedBatches:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        where = [self.seed, int(self.inner.epoch), int(self.inner.position)]
        batch = next(self.inner)
        return self.masking.apply(batch, np.random.default_rng(where))

    def state(self) -> dict[str, Any]:
        return self.inner.state()

    def restore(self, state: dict[str, Any]) -> None:
        self.inner.restore(state)


def report_only(task: tasks.Task) -> tasks.Task:
    """The task with no main metric: its scores are logged and reported but never drive
    best-checkpoint selection or the run's average (perplexity: lower is better)."""
    return dataclasses.replace(task, main_metric="")


def lm_task_data(
    config: ml_collections.ConfigDict,
    tokenizer: Any,
    corpus: str,
    *,
    index: int,
    objective: str,
    block_size: int,
    masking: Masking | None,
    seed: int,
    with_eval: bool = True,
) -> common.TaskData:
    """A corpus task as packed LM blocks (train iterator masked per batch; fixed-mask dev)."""
    if tokenizer is None:
        raise ValueError(f"model {config.model.name!r} has no tokenizer files; LM data needs one")
    if objective == "mlm" and masking is None:
        raise ValueError("objective 'mlm' needs masking settings")
    opts = {} if corpus.startswith("builtin/") else {"on_bad_row": config.data.on_bad_row}
    task = tasks.get_task(corpus, config.data.dir or None, **opts)
    if task.kind != "lm":
        raise ValueError(f"corpus {corpus!r} is a {task.kind} task; expected unlabelled text (lm)")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    limit = common._limit
    lines = limit(task.load("train"), config.data.max_train_examples)
    enc = tokenize.pack_corpus(
        lines, tokenizer, block_size=block_size, objective=objective, task_id=index
    )
    if len(enc) == 0:
        raise ValueError(
            f"corpus {corpus!r}: {len(lines)} training lines give no full block of "
            f"{block_size} tokens; lower the block size or use more text"
        )
    it: Any = batching.TrainBatches(
        enc,
        batch_size=config.train.batch_size,
        buckets=(block_size,),
        seed=seed,
        pad_id=pad_id,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    if objective == "mlm":
        it = MaskedBatches(it, masking, seed)
    ev: list[dict[str, np.ndarray]] = []
    if with_eval and "dev" in task.splits:
        dev = limit(task.load("dev"), config.data.max_eval_examples)
        denc = tokenize.pack_corpus(
            dev, tokenizer, block_size=block_size, objective=objective, task_id=index,
            drop_last=False,
        )  # fmt: skip
        ev = batching.eval_batches(
            denc,
            batch_size=config.train.eval_batch_size,
            buckets=(block_size,),
            pad_id=pad_id,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        )
        if objective == "mlm":
            ev = [
                masking.apply(b, np.random.default_rng([seed, 104729, jax.process_index(), i]))
                for i, b in enumerate(ev)
            ]
    log.info("corpus %s: %d train blocks of %d tokens, %d dev batches (%s)",
             corpus, len(enc), block_size, len(ev), objective)  # fmt: skip
    return common.TaskData(report_only(task), index, LM_KEY, len(enc), it, ev, "dev")


def line_task_data(
    config: ml_collections.ConfigDict,
    tokenizer: Any,
    corpus: str,
    *,
    index: int,
    key: str,
    seed: int,
) -> common.TaskData:
    """A corpus task as one example per line (for consistency / cross-view training, where the
    unlabelled inputs should look like the target task's sentences), bucketed like tasks."""
    opts = {} if corpus.startswith("builtin/") else {"on_bad_row": config.data.on_bad_row}
    task = tasks.get_task(corpus, config.data.dir or None, **opts)
    lines = common._limit(task.load("train"), config.data.max_train_examples)
    enc = tokenize.encode(task, lines, tokenizer, max_length=config.data.max_length, task_id=index)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    it = batching.TrainBatches(
        enc,
        batch_size=config.train.batch_size,
        buckets=tuple(config.data.buckets),
        seed=seed,
        pad_id=pad_id,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    return common.TaskData(report_only(task), index, key, len(enc), it, [], "dev")


# ------------------------------------------------------------------------------------ noise
def noise_tokens(
    key: jax.Array,
    batch: dict,
    rate: float,
    *,
    special_ids: np.ndarray,
    vocab_size: int,
    mask_id: int | None,
) -> jax.Array:
    """In-graph input noise for consistency training: each real, non-special token is chosen with
    probability ``rate``; a chosen token becomes [MASK] or a random non-special token (even odds;
    always random without a mask token). ``rate`` 0 returns the input ids unchanged."""
    ids = batch["input_ids"]
    if rate <= 0.0:
        return ids
    k_choose, k_kind, k_tok = jax.random.split(key, 3)
    specials = jnp.asarray(special_ids, jnp.int32)
    maskable = (batch["attention_mask"] > 0) & ~jnp.isin(ids, specials)
    chosen = maskable & (jax.random.uniform(k_choose, ids.shape) < rate)
    normal = jnp.asarray(np.setdiff1d(np.arange(vocab_size, dtype=np.int32), special_ids))
    random_ids = normal[jax.random.randint(k_tok, ids.shape, 0, normal.shape[0])]
    if mask_id is None:
        replacement = random_ids
    else:
        use_mask = jax.random.uniform(k_kind, ids.shape) < 0.5
        replacement = jnp.where(use_mask, jnp.int32(mask_id), random_ids)
    return jnp.where(chosen, replacement, ids)


def real_token_mask(batch: dict, special_ids: np.ndarray) -> jax.Array:
    """bool[B,T]: real (not padding), non-special tokens of real rows."""
    specials = jnp.asarray(special_ids, jnp.int32)
    return (
        (batch["attention_mask"] > 0)
        & ~jnp.isin(batch["input_ids"], specials)
        & (batch["example_weight"][:, None] > 0)
    )


def active_fn_for(params: Any, owners: dict[str, set[int]]) -> step_lib.ActiveFn:
    """``common.heads_active_fn`` with explicit owners per head (see there)."""
    return common.heads_active_fn(params, (), owners)
