"""A toy encoder as a pure params dict following jaxtl's path conventions, for partition tests.

Also tests the layer-unit helpers on it. Other partition tests import ``toy_params``/``toy_loss``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtl import paths
from jaxtl.partition import rules as R

H, V, C = 8, 13, 3


def toy_params(num_layers: int = 3, *, final_norm: bool = False, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> jnp.ndarray:
        return jnp.asarray(rng.normal(0, 0.5, shape), jnp.float32)

    def norm() -> dict:
        return {"scale": 1.0 + w(H) * 0.1, "bias": w(H) * 0.1}

    encoder = {
        "embeddings": {"word": {"embedding": w(V, H)}, "norm": norm()},
        "layers": {
            i: {
                "attention": {"query": {"kernel": w(H, H), "bias": w(H)}},
                "mlp": {"output": {"kernel": w(H, H)}},
                "norm": norm(),
            }
            for i in range(num_layers)
        },
    }
    if final_norm:
        encoder["final_norm"] = norm()
    return {
        "encoder": encoder,
        "representation": {"weights": w(num_layers + 1)},
        "heads": {"cls": {"kernel": w(H, C), "bias": w(C)}},
    }


def _ln(x, p):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / jnp.sqrt(v + 1e-5) * p["scale"] + p["bias"]


def toy_loss(params: dict, ids: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
    enc = params["encoder"]
    x = _ln(enc["embeddings"]["word"]["embedding"][ids], enc["embeddings"]["norm"])
    hs = [x]
    for i in sorted(enc["layers"]):
        lyr = enc["layers"][i]
        a = jnp.tanh(x @ lyr["attention"]["query"]["kernel"] + lyr["attention"]["query"]["bias"])
        x = _ln(x + a @ lyr["mlp"]["output"]["kernel"], lyr["norm"])
        hs.append(x)
    if "final_norm" in enc:
        hs[-1] = _ln(hs[-1], enc["final_norm"])
    mix = jax.nn.softmax(params["representation"]["weights"])
    rep = sum(m * h for m, h in zip(mix, hs)).mean(1)
    logits = rep @ params["heads"]["cls"]["kernel"] + params["heads"]["cls"]["bias"]
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))


def toy_batch(seed: int = 1, batch: int = 4, length: int = 5):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.integers(0, V, (batch, length))), jnp.asarray(rng.integers(0, C, batch))


def test_toy_loss_reaches_every_param():
    params = toy_params(final_norm=True)
    grads = jax.grad(toy_loss)(params, *toy_batch())
    zero = [p for p, g in paths.flatten(grads).items() if not np.any(np.asarray(g))]
    assert zero == []


@pytest.mark.parametrize(
    "path,unit",
    [
        ("encoder/embeddings/word/embedding", -1),
        ("encoder/embeddings_project/kernel", -1),
        ("encoder/layers/0/mlp/output/kernel", 0),
        ("encoder/layers/11/norm/scale", 11),
        ("encoder/final_norm/scale", 11),  # other encoder params go with the top layer
        ("heads/cls/kernel", None),
        ("representation/weights", None),
    ],
)
def test_layer_of(path, unit):
    assert R.layer_of(path, 12) == unit


def test_layer_regex_helpers():
    import re

    top = re.compile(R.top_unit(12))
    assert top.search("encoder/layers/11/x") and top.search("encoder/final_norm/scale")
    assert not top.search("encoder/layers/1/x") and not top.search("encoder/embeddings/x")
    assert not top.search("encoder/embeddings_project/kernel")
    for i in (0, 4, 9, 10, 23):
        rx = re.compile(R.layers_from(i))
        assert [j for j in range(150) if rx.search(f"encoder/layers/{j}/k")] == list(range(i, 150))
    rx = re.compile(R.layers_between(2, 5))
    assert [j for j in range(30) if rx.search(f"encoder/layers/{j}/k")] == [2, 3, 4]
