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


def e2e(s: Settings, train: list, dev: list) -> dict[str, Any]:
    """SST-2 end to end as a KerasHub user without TensorFlow writes it: the HF fast tokenizer
    (KerasHub's own WordPiece tokenizer needs tensorflow-text) pads every example to one fixed
    ``sequence_length`` — here the longest training example, rounded up to a multiple of 8 and
    at most 128, the most favourable fixed length for KerasHub — then ``model.fit`` for one
    epoch (batch ``s.batch_size``, shuffled once, seeded) with the same recipe as the other systems: AdamW
    (wd 0.01), global-norm clip 1.0, linear warm-up over 10% then linear decay to 0, and
    ``model.predict`` on dev. Wall time from model load and tokenisation to dev accuracy."""
    import time

    import keras
    from transformers import AutoTokenizer

    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(str(model_dir(s.model)), use_fast=True)

    def encode(examples: list, length: int | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
        enc = tok([e.text for e in examples], truncation=True, max_length=128)
        ids = enc["input_ids"]
        n = length or min(128, -(-max(len(x) for x in ids) // 8) * 8)
        out = np.zeros((len(ids), n), np.int32)
        for i, x in enumerate(ids):
            out[i, : len(x)] = x[:n]
        batch = {"input_ids": out, "token_type_ids": np.zeros_like(out),
                 "attention_mask": (out != tok.pad_token_id).astype(np.int32),
                 "label": np.asarray([int(e.label) for e in examples], np.int32)}  # fmt: skip
        return keras_batch(batch)

    x, y = encode(train, None)
    length = int(x["token_ids"].shape[1])
    xd, yd = encode(dev, length)
    steps = -(-len(train) // s.batch_size)
    warm = max(1, int(0.1 * steps))

    class LinearWarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):  # type: ignore[override]
            step = keras.ops.cast(step, "float32")
            up = step / warm
            down = keras.ops.maximum(0.0, (steps - step) / max(1, steps - warm))
            return s.lr * keras.ops.where(step < warm, up, down)

    model = build_model(s, "full")
    model.compile(
        optimizer=keras.optimizers.AdamW(
            learning_rate=LinearWarmupDecay(), weight_decay=0.01, epsilon=1e-8,
            global_clipnorm=1.0,
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )  # fmt: skip
    # Shuffled here, seeded: Keras ignores shuffle=True when it feeds arrays through grain.
    order = np.random.default_rng(s.seed).permutation(len(y))
    x, y = {k: v[order] for k, v in x.items()}, y[order]
    model.fit(x, y, batch_size=s.batch_size, epochs=1, shuffle=False, verbose=0)
    logits = model.predict(xd, batch_size=64, verbose=0)
    wall = time.perf_counter() - t0
    real = float(x["padding_mask"].sum())
    return {
        "wall_s": wall,
        "accuracy": float((np.argmax(logits, -1) == yd).mean()),
        "pad_fraction": 1.0 - real / x["padding_mask"].size,
        "sequence_length": length,
        "steps": steps,
        "what": "keras_hub BertTextClassifier.fit, fixed-length padding (HF tokenizer)",
    }
