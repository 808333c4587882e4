"""Train the zoo models on the embedded data and write needle_qc/tools/checkpoints/<name>.npz.

Seeded and deterministic on one device; run from the repository root::

    .venv/bin/python scripts/train_checkpoints.py              # every zoo model
    .venv/bin/python scripts/train_checkpoints.py mlp small_cnn

Each checkpoint records its model name, seed, epochs, optimizer and held-out score, which
``needle_qc.tools.zoo.checkpoint_info(name)`` reads back.
"""
import argparse
import os
import sys
import time

import numpy as np

import needle as ndl
from needle import nn, optim
from needle_qc.tools import zoo

# name -> (epochs, batch size, Adam learning rate)
RECIPES = {
    "mlp": (5, 64, 1e-3),
    "small_cnn": (3, 64, 2e-3),
    "resnet9": (3, 64, 1e-3),
    "lstm_lm": (10, 16, 3e-3),
    "transformer_lm": (8, 16, 2e-3),
}
SEED = 0


def _shuffled(batches, rng):
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def _train_classifier(model, name, epochs, batch_size, lr, device, rng):
    X, y = zoo.dataset(name, "train")
    opt = optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.SoftmaxLoss()
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(X))
        total = 0.0
        for start in range(0, len(X), batch_size):
            idx = order[start: start + batch_size]
            xb = ndl.Tensor(X[idx], device=device, requires_grad=False)
            yb = ndl.Tensor(y[idx], device=device, requires_grad=False)
            opt.reset_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            total += float(loss.numpy()) * len(idx)
        print(f"  {name} epoch {epoch + 1}/{epochs}: train loss {total / len(X):.4f}", flush=True)


def _train_lm(model, name, epochs, batch_size, lr, device, rng):
    data = zoo.batches(name, "train", batch_size)
    opt = optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.SoftmaxLoss()
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for x, y in _shuffled(data, rng):
            opt.reset_grad()
            loss = loss_fn(model(ndl.Tensor(x, device=device)), ndl.Tensor(y, device=device))
            loss.backward()
            opt.step()
            total += float(loss.numpy())
        print(f"  {name} epoch {epoch + 1}/{epochs}: train loss {total / len(data):.4f}",
              flush=True)


def train(name, out_dir, device):
    """Train zoo model ``name`` from seed :data:`SEED`; returns the checkpoint record."""
    epochs, batch_size, lr = RECIPES[name]
    np.random.seed(SEED)  # needle.init draws from numpy's global RNG
    rng = np.random.default_rng(SEED)
    entry = zoo.get(name)
    model = entry.factory(device=device)
    start = time.time()
    trainer = _train_lm if entry.task == "language_model" else _train_classifier
    trainer(model, name, epochs, batch_size, lr, device, rng)
    model.eval()
    score = zoo.evaluate(name, lambda x: model(ndl.Tensor(x, device=device)), "heldout")
    score.pop("logits")
    info = dict(seed=SEED, epochs=epochs, batch_size=batch_size, optimizer="Adam", lr=lr,
                heldout=score, train_seconds=round(time.time() - start, 1))
    meta = zoo.save_checkpoint(model, name, os.path.join(out_dir, entry.checkpoint), **info)
    print(f"{name}: {meta}", flush=True)
    return meta


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(RECIPES), help="zoo names")
    parser.add_argument("--out", default=zoo.CHECKPOINT_DIR, help="output folder")
    args = parser.parse_args(argv)
    unknown = [m for m in args.models if m not in RECIPES]
    if unknown:
        parser.error(f"unknown models {unknown}; known: {list(RECIPES)}")
    os.makedirs(args.out, exist_ok=True)
    for name in args.models:
        train(name, args.out, ndl.cpu())
    return 0


if __name__ == "__main__":
    sys.exit(main())
