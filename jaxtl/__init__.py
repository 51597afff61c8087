"""jaxtl: transfer learning for NLP in JAX/Flax NNX.

Four regimes (self-supervised joint training, unsupervised pretraining then adaptation,
multi-task learning, supervised pretraining then adaptation) share one set of encoders,
one parameter-partition layer, one sharded train step and one training loop.
"""

import flax

# Parameters carry *logical* axis names (embed, mlp, heads, vocab, ...). They are mapped to mesh
# axes by jaxtl.mesh when a run builds its state; models must be constructible with no mesh at
# all (tests, notebooks, conversion scripts), so eager sharding at variable creation is off.
flax.config.update("flax_always_shard_variable", False)

__version__ = "0.1.0"


def load(workdir, **kwargs):
    """A finished run's trained model, ready to predict (:class:`jaxtl.predictor.Predictor`):
    ``jaxtl.load("runs/mine").predict(["some text"])``."""
    from jaxtl.predictor import load as _load  # lazily: importing jaxtl stays light

    return _load(workdir, **kwargs)


def embedder(model=None, **kwargs):
    """Sentence embeddings from a pretrained ``model`` or a finished run (``workdir=``)
    (:func:`jaxtl.embed.embedder`): ``jaxtl.embedder("minilm").embed(["some text"])``."""
    from jaxtl.embed import embedder as _embedder  # lazily, as load

    return _embedder(model, **kwargs)
