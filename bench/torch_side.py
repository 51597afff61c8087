"""The PyTorch side: transformers' BertModel + a linear head, as an HF user writes it.

Same weights as jaxtl: the encoder comes from the same directory (``AutoModel.from_pretrained``,
no pooler: the jaxtl head pools [CLS] itself), and the head's weights (and LoRA's ``A``) are
copied from the jaxtl model, so both systems start from identical parameters.

Freezing is ``requires_grad=False`` on the frozen parameters (what HF users do); the frozen
encoder's forward still runs under autograd (no ``torch.no_grad``), and autograd skips the
backward of a sub-graph with no parameter that requires grad.

``peft`` is not installed, so LoRA is :class:`LoRALinear` below: ``x W + b + (alpha/r) (x A) B``
on query and value, the same computation as ``jaxtl.peft.LoRALinear``.

The optimizer is ``torch.optim.AdamW(fused=True)``, the default of HF ``Trainer`` with torch >=
2.8 (``adamw_torch_fused``), with gradient clipping at 1.0 and a linear warm-up/decay schedule like
the jaxtl default; weight decay on matrices only, as jaxtl does.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.common import HEAD_KEY, Settings, model_dir


def set_threads() -> int:
    """As many intra-op threads as the cores JAX uses (XLA's CPU pool uses every core)."""
    n = os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, a: np.ndarray, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.lora_a = nn.Parameter(torch.from_numpy(np.array(a, np.float32)))  # [in, r]
        self.lora_b = nn.Parameter(torch.zeros(rank, base.out_features))  # [r, out]
        self.scaling = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a @ self.lora_b) * self.scaling


class Classifier(nn.Module):
    """BertModel -> [CLS] -> dropout -> linear; returns ``{"loss", "logits"}`` like HF heads."""

    def __init__(
        self,
        path: str | None,
        num_labels: int = 2,
        dropout: float = 0.1,
        *,
        encoder: nn.Module | None = None,
    ):
        """From the pretrained directory ``path``, or around ``encoder`` when it is given."""
        super().__init__()
        from transformers import AutoModel

        if encoder is not None:
            self.encoder = encoder
        else:
            from transformers import AutoConfig, T5EncoderModel

            if AutoConfig.from_pretrained(path).model_type in ("t5", "mt5"):
                auto: Any = T5EncoderModel  # AutoModel would be the whole seq2seq model
            else:
                auto = AutoModel
            try:  # BERT-like models build a pooler unless told not to; others have no such one
                self.encoder = auto.from_pretrained(path, add_pooling_layer=False)
            except TypeError:
                self.encoder = auto.from_pretrained(path)
        # T5's encoder takes no token types
        self.token_types = "token_type_ids" in inspect.signature(self.encoder.forward).parameters
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.encoder.config.hidden_size, num_labels)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        types = {"token_type_ids": token_type_ids} if self.token_types else {}
        h = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, **types
        ).last_hidden_state[:, 0]
        logits = self.classifier(self.dropout(h))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = F.cross_entropy(logits, labels)
        return out


def build_model(s: Settings, strategy: str, jax_params: dict) -> Classifier:
    """The PyTorch twin of ``bench.jaxtl_side.build_model(s, strategy)``; ``jax_params`` is that
    model's pure-dict params (head weights and LoRA ``A`` are copied from it)."""
    torch.manual_seed(s.seed)
    model = Classifier(str(model_dir(s.model)))
    head = jax_params["heads"][HEAD_KEY]["classifier"]
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(np.asarray(head["kernel"]).T.copy()))
        model.classifier.bias.copy_(torch.from_numpy(np.array(head["bias"], np.float32)))
    if strategy == "lora":
        for i, layer in enumerate(model.encoder.encoder.layer):  # BERT-family layout
            att = layer.attention.self
            jl = jax_params["encoder"]["layers"][i]["attention"]
            att.query = LoRALinear(att.query, np.asarray(jl["query"]["lora_a"]), s.lora_rank,
                                   s.lora_alpha)  # fmt: skip
            att.value = LoRALinear(att.value, np.asarray(jl["value"]["lora_a"]), s.lora_rank,
                                   s.lora_alpha)  # fmt: skip
    freeze(model, strategy)
    return model


def freeze(model: Classifier, strategy: str) -> None:
    enc = model.encoder
    if strategy == "full":
        return
    if strategy in ("frozen", "lora"):
        for name, p in enc.named_parameters():
            p.requires_grad_(strategy == "lora" and "lora_" in name)
        return
    if strategy == "bottom_half":
        n = len(enc.encoder.layer)
        for p in enc.embeddings.parameters():
            p.requires_grad_(False)
        for layer in enc.encoder.layer[: n // 2]:
            for p in layer.parameters():
                p.requires_grad_(False)
        return
    raise ValueError(f"unknown strategy {strategy!r}")


def make_optimizer(model: nn.Module, s: Settings, total_steps: int = 1000):
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for _, p in trainable if p.ndim >= 2], "weight_decay": 0.01},
        {"params": [p for _, p in trainable if p.ndim < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=s.lr, eps=1e-8, fused=True)
    warm = max(1, int(0.1 * total_steps))

    def lr_lambda(step: int) -> float:
        if step < warm:
            return step / warm
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    return opt, sched, [p for _, p in trainable]


def torch_batch(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {
        "input_ids": torch.from_numpy(batch["input_ids"].astype(np.int64)),
        "attention_mask": torch.from_numpy(batch["attention_mask"].astype(np.int64)),
        "token_type_ids": torch.from_numpy(batch["token_type_ids"].astype(np.int64)),
        "labels": torch.from_numpy(batch["label"].astype(np.int64)),
    }


def optimizer_state_bytes(opt: torch.optim.Optimizer) -> int:
    return int(
        sum(v.numel() * v.element_size() for st in opt.state.values() for v in st.values()
            if torch.is_tensor(v))
    )  # fmt: skip


@dataclasses.dataclass
class TrainSetup:
    model: Classifier
    opt: Any
    sched: Any
    trainable: list
    batch: dict
    trainable_params: int

    def run(self, autocast: str | None = None) -> None:
        """One step; ``autocast``: a device type whose bf16 autocast wraps forward and loss."""
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(autocast, dtype=torch.bfloat16) if autocast else nullcontext():
            loss = self.model(**self.batch)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.trainable, 1.0)
        self.opt.step()
        self.sched.step()


@dataclasses.dataclass
class AcceleratorSetup:
    """Full fine-tuning on ``device`` as an HF user trains on a GPU: fp32 weights, bf16 autocast
    around forward and loss (what ``Trainer(bf16=True)`` does), fused AdamW, clipping at 1.0."""

    step: TrainSetup
    device: Any

    def run_many(self, n: int) -> None:
        """``n`` steps back to back, then one wait for the device."""
        for _ in range(n):
            self.step.run(autocast=self.device.type)
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def peak_bytes(self) -> int | None:
        return int(torch.cuda.max_memory_allocated()) if self.device.type == "cuda" else None


def accelerator_setup(s: Settings, hf_config: dict, batch: dict, device: str) -> AcceleratorSetup:
    """transformers' ``BertModel`` built from ``hf_config`` (random init, no pooler, its default
    attention implementation) with the linear head, on ``device``."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(s.seed)
    dev = torch.device(device)
    if dev.type == "cuda":  # the peak of this setup alone (an earlier batch size used less)
        torch.cuda.reset_peak_memory_stats(dev)
    encoder = BertModel(BertConfig(**hf_config), add_pooling_layer=False)
    model = Classifier(None, encoder=encoder).to(dev)
    opt, sched, trainable = make_optimizer(model, s)
    tb = {k: v.to(dev) for k, v in torch_batch(batch).items()}
    n = int(sum(p.numel() for p in trainable))
    return AcceleratorSetup(TrainSetup(model, opt, sched, trainable, tb, n), dev)


def train_setup(s: Settings, strategy: str, jax_params: dict, batch: dict) -> TrainSetup:
    model = build_model(s, strategy, jax_params)
    opt, sched, trainable = make_optimizer(model, s)
    return TrainSetup(
        model, opt, sched, trainable, torch_batch(batch), int(sum(p.numel() for p in trainable))
    )


def mlm_setup(s: Settings, batch: dict) -> TrainSetup:
    """transformers' ``BertForMaskedLM`` on the same directory (the packaged MiniLM has no MLM
    head: it is initialised, as the jaxtl side's is) and the same masked batch; its loss decodes
    every position and ignores the unmasked ones (label -100), as an HF MLM user trains."""
    from transformers import AutoModelForMaskedLM

    torch.manual_seed(s.seed)
    model = AutoModelForMaskedLM.from_pretrained(str(model_dir(s.model)))
    opt, sched, trainable = make_optimizer(model, s)
    tb = torch_batch(batch)
    tb["labels"] = torch.from_numpy(batch["token_labels"].astype(np.int64))  # IGNORE is -100
    return TrainSetup(model, opt, sched, trainable, tb, int(sum(p.numel() for p in trainable)))


@dataclasses.dataclass
class ForwardSetup:
    encoder: nn.Module
    batch: dict
    out: Any = None

    def run(self) -> None:
        with torch.inference_mode():
            self.out = self.encoder(**self.batch).last_hidden_state


def forward_setup(s: Settings, batch: dict) -> ForwardSetup:
    from transformers import AutoModel

    enc = AutoModel.from_pretrained(str(model_dir(s.model)), add_pooling_layer=False).eval()
    b = torch_batch(batch)
    b.pop("labels")
    return ForwardSetup(enc, b)
