"""An encoder with its tied language-model head, as the LM objectives need it.

:func:`load_lm_model` returns the encoder plus its LM head (BERT-family MLM head, GPT-2's tied
CLM head). The head comes from the checkpoint when it has one (``cls.predictions`` …), else it is
freshly initialised (the packaged all-MiniLM-L6-v2 ships without one); ``from_scratch`` builds a
random encoder from the checkpoint's config instead of loading its weights.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import jax.numpy as jnp
from flax import nnx

from jaxtl.models import hf, scratch
from jaxtl.models.registry import family as get_family

log = logging.getLogger(__name__)

LM_KEY = hf.LM_HEAD  # "lm": heads/lm/... and the head save_pretrained exports


@dataclasses.dataclass
class LMModel:
    encoder: nnx.Module
    head: nnx.Module  # MLMHead | CLMHead, called as head(last_hidden, encoder.tied_embedding())
    tokenizer: Any
    hf_config: dict
    head_pretrained: bool  # False: the checkpoint had no LM head, this one is freshly initialised
    from_scratch: bool


def has_lm_head(name: str | os.PathLike) -> bool:
    """Whether ``name``'s family has an LM head jaxtl can load or build (T5's has none here)."""
    if scratch.is_spec(name):
        return True  # a "new:" model is one of the families scratch builds, all with LM heads
    hf_config = hf.read_config(hf.resolve(name))
    fam = get_family(hf_config["model_type"])
    return fam.lm_head is not None and fam.lm_key_map is not None


def load_lm_model(
    name: str | os.PathLike,
    *,
    allow_pickle: bool = False,
    dtype: Any = jnp.float32,
    seed: int = 0,
    from_scratch: bool = False,
) -> LMModel:
    """The encoder of ``name`` with a tied LM head (see the module docstring)."""
    new = None
    if scratch.is_spec(name):  # a "new:" model: random encoder, fresh head (from scratch)
        new = scratch.build(str(name), seed=seed, dtype=dtype)
        hf_config = new[2]
        fam = get_family(hf_config["model_type"], where=f"model.name={str(name)!r}")
    else:
        path = hf.resolve(name)
        hf_config = hf.read_config(path)
        fam = get_family(hf_config["model_type"], where=str(path / "config.json"))
    if fam.lm_head is None or fam.lm_key_map is None:
        raise ValueError(
            f"model.name={str(name)!r}: model_type {fam.model_type!r} has no LM head, so it cannot "
            "be pretrained on unlabelled text here (use a bert/roberta/gpt2 checkpoint)"
        )
    rngs = nnx.Rngs(seed)
    encoder: Any  # an NNX encoder, used by attribute (.cfg)
    if new is not None:
        encoder, tokenizer = new[0], new[1]
        head = fam.lm_head(encoder.cfg, rngs=rngs)
        log.info("%s: random encoder and LM head (a new model)", name)
        return LMModel(encoder, head, tokenizer, hf_config, False, True)
    if from_scratch:
        encoder = hf.build_encoder(fam.model_type, hf_config, rngs=rngs, dtype=dtype)
        head = fam.lm_head(encoder.cfg, rngs=rngs)
        log.info("%s: random encoder and LM head from its config.json (from scratch)", name)
        return LMModel(encoder, head, hf.load_tokenizer(path), hf_config, False, True)
    names = hf.tensor_names(path)
    wanted = [r.hf for r in fam.lm_key_map(fam.config_from_hf(hf_config))]
    has_head = names is None or all(w in names for w in wanted)
    pre = hf.from_pretrained(path, allow_pickle=allow_pickle, dtype=dtype, load_lm_head=has_head)
    if has_head:
        model: Any = pre.model  # load_lm_head=True: TransferModel(encoder, {"lm": head})
        encoder, head = model.encoder, model.heads[LM_KEY]
    else:
        encoder = pre.model
        head = fam.lm_head(encoder.cfg, rngs=rngs)
        log.info("%s has no LM head (%s...): a fresh one is initialised", name, wanted[0])
    return LMModel(encoder, head, pre.tokenizer, pre.hf_config, has_head, False)
