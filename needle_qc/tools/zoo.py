"""Model zoo: name -> (factory, input spec, dataset, checkpoint), with the embedded data.

Every entry trains in minutes on two cores from the data shipped inside ``needle.data``
(``scripts/train_checkpoints.py``, seeded) and its state dict is committed as a small ``.npz``
in ``needle_qc/checkpoints/`` so tests and examples start from a trained model.

=================  ===========================================  ===================  ==========
name               model                                        input (N = batch)    dataset
=================  ===========================================  ===================  ==========
``mlp``            MLP 784-256-256-10 (ReLU)                    f32 (N, 784)         mnist
``small_cnn``      SmallCNN: ConvBN 1->16 s2, 16->32 s2, Linear f32 (N, 1, 28, 28)   mnist
``resnet9``        hw4 ResNet9 (431,946 parameters)             f32 (N, 3, 32, 32)   mnist32x3
``lstm_lm``        Embedding 32 -> LSTM 32 -> Linear, PTB vocab ids (20, N)          ptb
``transformer_lm`` Embedding 32 -> 1 Transformer layer -> Linear ids (20, N)         ptb
=================  ===========================================  ===================  ==========

``mnist32x3`` is the 28x28 digit zero-padded by 2 pixels on each side to 32x32 and repeated
over 3 channels, so the CIFAR-10 ResNet9 runs unchanged. The MLP is 784-256-256-10 rather
than 784-512-512-10 because its float32 checkpoint must stay under 2 MB. The language models
train on the first 1,000 lines of the embedded ptb.valid.txt and are scored on the first 1,000
lines of ptb.test.txt; their vocabulary is the 3,375 words of the training part, and a held-out
word outside it counts as ``<unk>`` (about 10 % of held-out tokens). The LM entries return only
the logits, ``(T*N, vocab)``, not the ``(logits, h)`` pair.

A user model is named ``"package.module:factory"``: the factory is called with no arguments;
its input spec is taken from a ``ZOO_INPUT`` attribute of the factory or module if present.
"""
from __future__ import annotations

import functools
import importlib
import json
import os
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ZooEntry", "InputSpec", "CHECKPOINT_DIR", "list_models", "get", "build",
           "load_pretrained", "load_checkpoint", "save_checkpoint", "example_input", "dataset",
           "batches", "evaluate", "PTB_MAX_LINES", "LM_SEQ_LEN"]

CHECKPOINT_DIR = os.path.join(os.path.dirname(__file__), "checkpoints")
PTB_MAX_LINES = 1000
"""Lines of each embedded PTB file the language models read (keeps the vocabulary small)."""
LM_SEQ_LEN = 20
"""Sequence length (bptt) the language models were trained and are evaluated at."""
_META_KEY = "__zoo_meta__"


@dataclass(frozen=True)
class InputSpec:
    """Shape (``"N"`` marks the batch dim), dtype, and which dim is the batch (for tracing)."""

    shape: tuple
    dtype: str = "float32"
    batch_dim: int = 0
    high: int | None = None  # ids are drawn from [0, high) (language models)

    def concrete(self, batch):
        """The shape with ``N`` replaced by ``batch``."""
        return tuple(batch if d == "N" else d for d in self.shape)


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model: how to build it, what it eats, what it was trained on."""

    name: str
    factory: object
    input: InputSpec
    dataset: str | None
    checkpoint: str | None
    description: str = ""
    task: str = "classification"  # or "language_model"
    extra: dict = field(default_factory=dict)

    def build(self, device=None):
        """A fresh (untrained) model, in eval mode."""
        model = self.factory(device=device) if device is not None else self.factory()
        return model.eval()


# ----------------------------------------------------------------------------- factories

@functools.cache
def _ptb_streams():
    """(train ids, heldout ids, vocabulary size): the vocabulary is the training file's; a
    held-out word never seen in training becomes ``<unk>`` (PTB's own unknown-word token)."""
    from needle.data import embedded_ptb

    corpus = embedded_ptb(max_lines=PTB_MAX_LINES)
    train = np.asarray(corpus.train, np.int64)
    vocab = int(train.max()) + 1  # ids are given in first-seen order, training file first
    unk = corpus.dictionary.word2idx["<unk>"]
    test = np.asarray(corpus.test, np.int64)
    test = np.where(test < vocab, test, unk)
    return train.astype(np.float32), test.astype(np.float32), vocab


def _ptb_vocab():
    return _ptb_streams()[2]


def _mlp(device=None):
    from needle.models import MLP

    return MLP(784, (256, 256), 10, device=device)


def _small_cnn(device=None):
    from needle.models import SmallCNN

    return SmallCNN(device=device)


def _resnet9(device=None):
    from needle.models import ResNet9

    return ResNet9(device=device)


@functools.cache
def _language_model_logits():
    from needle.models import LanguageModel

    class LanguageModelLogits(LanguageModel):
        """LanguageModel whose forward returns only the logits ``(T*N, vocab)``."""

        def forward(self, x, h=None):
            return super().forward(x, h)[0]

    return LanguageModelLogits


def _lm(seq_model):
    def factory(device=None):
        cls = _language_model_logits()
        return cls(32, _ptb_vocab(), 32, 1, seq_model, seq_len=LM_SEQ_LEN, device=device)
    factory.__name__ = f"{seq_model}_lm"
    return factory


_MNIST = InputSpec(("N", 1, 28, 28))
_REGISTRY = {
    "mlp": ZooEntry("mlp", _mlp, InputSpec(("N", 784)), "mnist", "mlp.npz",
                    "MLP 784-256-256-10 on embedded MNIST"),
    "small_cnn": ZooEntry("small_cnn", _small_cnn, _MNIST, "mnist", "small_cnn.npz",
                          "SmallCNN (2 ConvBN stride 2 + Linear) on embedded MNIST"),
    "resnet9": ZooEntry("resnet9", _resnet9, InputSpec(("N", 3, 32, 32)), "mnist32x3",
                        "resnet9.npz", "hw4 ResNet9 on MNIST padded to 32x32x3"),
    "lstm_lm": ZooEntry("lstm_lm", _lm("lstm"), InputSpec((LM_SEQ_LEN, "N"), batch_dim=1),
                        "ptb", "lstm_lm.npz", "LSTM language model on embedded PTB",
                        task="language_model"),
    "transformer_lm": ZooEntry("transformer_lm", _lm("transformer"),
                               InputSpec((LM_SEQ_LEN, "N"), batch_dim=1), "ptb",
                               "transformer_lm.npz", "Transformer language model on embedded PTB",
                               task="language_model"),
}


def list_models():
    """Names of the built-in zoo models."""
    return list(_REGISTRY)


def get(name):
    """The :class:`ZooEntry` for a zoo name or a ``"module:factory"`` user model.

    Raises
    ------
    KeyError
        Unknown name (the message lists the zoo).
    ValueError
        A ``module:factory`` that cannot be imported or is not callable.
    """
    if not isinstance(name, str):
        raise TypeError(f"zoo.get: model name must be a str, got {type(name).__name__}")
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        return _user_entry(name)
    raise KeyError(f"zoo: unknown model {name!r}; known: {', '.join(_REGISTRY)} "
                   "(or 'package.module:factory')")


def _user_entry(name):
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"zoo: cannot import {module_name!r} for model {name!r} ({err})") from err
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"zoo: {module_name!r} has no callable {attr!r} (model {name!r})")
    spec = getattr(factory, "ZOO_INPUT", None) or getattr(module, "ZOO_INPUT", None)
    if spec is not None and not isinstance(spec, InputSpec):
        spec = InputSpec(tuple(spec))
    return ZooEntry(name, lambda device=None: factory(), spec, None, None, f"user model {name}")


def build(name, device=None):
    """A fresh, untrained model for ``name`` (eval mode)."""
    return get(name).build(device)


# ----------------------------------------------------------------------------- checkpoints

def save_checkpoint(model, name, path, **info):
    """Write ``model.state_dict()`` plus a record of which zoo model it is to ``path`` (.npz).

    The record (model name, parameter and buffer element counts, ``info``) is stored as JSON
    bytes in a uint8 array, so the file stays pickle-free.
    """
    state = model.state_dict()
    meta = dict(info, model=name, parameters=_elements(model.parameters()),
                buffers=_elements(t for _, t in model.named_buffers()))
    arrays = dict(state)
    arrays[_META_KEY] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return meta


def _elements(tensors):
    return int(sum(int(np.prod(t.shape)) for t in tensors))


def _read_checkpoint(path):
    from needle.serialization import load

    state = load(path)
    raw = state.pop(_META_KEY, None)
    meta = {} if raw is None else json.loads(bytes(raw.astype(np.uint8)).decode())
    return state, meta


def load_checkpoint(model, path, name=None):
    """Load the checkpoint at ``path`` into ``model``; returns the checkpoint's record.

    Raises
    ------
    ValueError
        The checkpoint was saved for another zoo model than ``name``, or its keys/shapes do
        not fit ``model`` (the message names both and the differing keys).
    """
    state, meta = _read_checkpoint(path)
    saved = meta.get("model")
    if name is not None and saved is not None and saved != name:
        raise ValueError(f"checkpoint {os.path.basename(path)} holds zoo model {saved!r}, "
                         f"not {name!r}")
    try:
        model.load_state_dict(state, strict=True)
    except (KeyError, ValueError) as err:
        what = name or type(model).__name__
        raise ValueError(f"checkpoint {os.path.basename(path)} (model {saved or 'unknown'!r}) "
                         f"does not fit {what!r}: {err}") from None
    return meta


def load_pretrained(name, device=None, path=None):
    """The zoo model ``name`` with its committed trained weights, in eval mode.

    Parameters
    ----------
    name : str
        A zoo name (:func:`list_models`).
    device : needle device, optional
    path : str, optional
        Another checkpoint file to load instead of the committed one.

    Raises
    ------
    ValueError
        No checkpoint for ``name``, or the file belongs to another model.
    FileNotFoundError
        The checkpoint file is missing (run ``scripts/train_checkpoints.py``).
    """
    entry = get(name)
    if path is None:
        if entry.checkpoint is None:
            raise ValueError(f"zoo: model {name!r} has no committed checkpoint; pass path=")
        path = os.path.join(CHECKPOINT_DIR, entry.checkpoint)
    model = entry.build(device)
    load_checkpoint(model, path, name)
    return model.eval()


def checkpoint_info(name):
    """The record saved with ``name``'s committed checkpoint (accuracy, epochs, seed, ...)."""
    return _read_checkpoint(os.path.join(CHECKPOINT_DIR, get(name).checkpoint))[1]


# ----------------------------------------------------------------------------- data

def _mnist(split, layout):
    from needle.data import load_mnist_split

    X, y = load_mnist_split(split)
    X = X.transpose(0, 3, 1, 2)
    if layout == "flat":
        X = X.reshape(len(X), 784)
    elif layout == "pad32x3":
        X = np.pad(X, ((0, 0), (0, 0), (2, 2), (2, 2))).repeat(3, axis=1)
    return np.ascontiguousarray(X, np.float32), y


def _ptb_ids(split):
    train, test, _ = _ptb_streams()
    return (train if split == "train" else test).copy()


def dataset(name, split="heldout"):
    """The model's data in its input layout.

    Classification: ``(X, y)`` numpy arrays (MNIST: 8,000 train / 2,000 held-out).
    Language models: the token id stream (float32, as Needle's Embedding takes ids), train =
    ptb.valid, heldout = ptb.test (first :data:`PTB_MAX_LINES` lines each; held-out words
    outside the training vocabulary mapped to ``<unk>``).
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"zoo.dataset: split must be 'train' or 'heldout', got {split!r}")
    entry = get(name)
    layouts = {"mnist": "flat" if entry.input.shape == ("N", 784) else "nchw",
               "mnist32x3": "pad32x3"}
    if entry.dataset in layouts:
        return _mnist(split, layouts[entry.dataset])
    if entry.dataset == "ptb":
        return _ptb_ids(split)
    raise ValueError(f"zoo: model {name!r} has no dataset")


def batches(name, split="heldout", batch_size=64, limit=None):
    """List of ``(x, y)`` numpy batches in the model's input layout.

    Language models: ``x`` is ``(LM_SEQ_LEN, batch_size)`` ids and ``y`` the ``(T*bs,)`` next
    ids (the course's batchify/get_batch, full-length chunks only, so a graph traced at
    ``T = LM_SEQ_LEN`` runs them all). ``limit`` caps the number of batches.
    """
    entry = get(name)
    out = []
    if entry.task == "language_model":
        from needle.data import batchify

        grid = batchify(dataset(name, split), batch_size)
        for i in range(0, len(grid) - 1 - LM_SEQ_LEN + 1, LM_SEQ_LEN):
            out.append((grid[i: i + LM_SEQ_LEN], grid[i + 1: i + 1 + LM_SEQ_LEN].reshape(-1)))
    else:
        X, y = dataset(name, split)
        out = [(X[i: i + batch_size], y[i: i + batch_size]) for i in range(0, len(X), batch_size)]
    return out[:limit] if limit is not None else out


def example_input(name, batch=8, seed=0):
    """A deterministic example input for tracing: real data rows (zoo) or random values."""
    entry = get(name)
    if entry.dataset is not None:
        return batches(name, "train", batch, limit=1)[0][0]
    if entry.input is None:
        raise ValueError(f"zoo: user model {name!r} declares no ZOO_INPUT; pass an example")
    rng = np.random.default_rng(seed)
    shape = entry.input.concrete(batch)
    if entry.input.high is not None:
        return rng.integers(0, entry.input.high, shape).astype(entry.input.dtype)
    return rng.standard_normal(shape).astype(entry.input.dtype)


def _logits_of(fn, x):
    out = fn(x)
    if isinstance(out, (tuple, list)):
        out = out[0]
    return np.asarray(out.numpy() if hasattr(out, "numpy") else out, np.float64)


def evaluate(name, fn, split="heldout", batch_size=256, limit=None):
    """Score ``fn`` (numpy/Tensor input -> logits) on the model's data.

    Returns
    -------
    dict
        ``{"accuracy": ...}`` for classifiers, ``{"perplexity": ..., "loss": ...}`` (mean
        cross-entropy, nats/token) for language models, plus ``"logits"`` (all batches
        concatenated, float64) for deviation metrics.
    """
    entry = get(name)
    if entry.task == "language_model":
        batch_size = min(batch_size, 16)
    logits, labels = [], []
    for x, y in batches(name, split, batch_size, limit):
        logits.append(_logits_of(fn, x))
        labels.append(np.asarray(y).astype(np.int64))
    z, y = np.concatenate(logits), np.concatenate(labels)
    if entry.task == "language_model":
        shifted = z - z.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = float(-logp[np.arange(len(y)), y].mean())
        return {"perplexity": float(np.exp(loss)), "loss": loss, "logits": z}
    return {"accuracy": float((z.argmax(axis=1) == y).mean()), "logits": z}
