"""The KerasHub side: ``keras_hub.models.BertTextClassifier`` on the JAX backend, as a KerasHub user
writes it — the JAX peer a user would pick instead of jaxtl.

The model comes from the same local HF directory (``from_preset(<dir>)`` converts the
safetensors checkpoint), so weights match jaxtl's encoder. Differences a reader should know:
KerasHub's BERT uses the tanh approximation of GELU (MiniLM's ``hidden_act`` is exact ``gelu``;
the cost is the same), and its classifier reads the backbone's pooled output (the [CLS] state
through the pretrained ``pooler`` dense + tanh) where jaxtl's and the PyTorch side's read the
[CLS] state directly — one 384×384 matmul per row, noise at this size.

Strategies: ``full`` (everything trains), ``frozen`` (``backbone.trainable = False``: the head
alone trains), ``lora`` (``backbone.enable_lora(rank)``: KerasHub's own LoRA on query and value).
The train step is ``model.train_on_batch`` of a model compiled with ``jit_compile=True`` and AdamW
(weight decay 0.01, global-norm clipping 1.0, the same peak LR), so Keras runs one XLA program
per step, as jaxtl does. KerasHub pads every batch to a fixed length; the step case uses the same
fixed-shape batch for all three systems.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from bench.common import Settings, model_dir

os.environ.setdefault("KERAS_BACKEND", "jax")


def available() -> str | None:
    """None when keras-hub imports on the JAX backend, else why not (the case is skipped)."""
    try:
        import keras
        import keras_hub  # noqa: F401
    except Exception as e:  # ImportError or a broken optional dependency of keras-hub
        return f"keras-hub not importable ({type(e).__name__}: {e}); pip install -e .[bench]"
    if keras.backend.backend() != "jax":
        return f"Keras backend is {keras.backend.backend()!r}, not 'jax' (set KERAS_BACKEND=jax)"
    return None


def build_model(s: Settings, strategy: str, *, lora_rank: int = 8) -> Any:
    import keras
    import keras_hub

    keras.utils.set_random_seed(s.seed)
    model = keras_hub.models.BertTextClassifier.from_preset(
        str(model_dir(s.model)), num_classes=2, preprocessor=None
    )
    if strategy == "frozen":
        model.backbone.trainable = False
    elif strategy == "lora":
        model.backbone.enable_lora(rank=lora_rank)
    elif strategy != "full":
        raise ValueError(f"KerasHub side has no strategy {strategy!r} (full | frozen | lora)")
    model.compile(
        optimizer=keras.optimizers.AdamW(
            learning_rate=s.lr, weight_decay=0.01, epsilon=1e-8, global_clipnorm=1.0
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    return model


def keras_batch(batch: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    x = {
        "token_ids": batch["input_ids"].astype(np.int32),
        "segment_ids": batch["token_type_ids"].astype(np.int32),
        "padding_mask": batch["attention_mask"].astype(bool),
    }
    return x, batch["label"].astype(np.int32)


@dataclasses.dataclass
class TrainSetup:
    model: Any
    x: dict
    y: np.ndarray
    trainable_params: int

    def run(self) -> None:
        # train_on_batch returns host floats, so the step has finished when it returns.
        self.model.train_on_batch(self.x, self.y)


def train_setup(s: Settings, strategy: str, batch: dict[str, np.ndarray]) -> TrainSetup:
    model = build_model(s, strategy)
    x, y = keras_batch(batch)
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return TrainSetup(model, x, y, trainable)
