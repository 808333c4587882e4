"""Train a Needle MLP on the embedded MNIST split and print its held-out accuracy.

Usage: python examples/train_mnist.py [--epochs 5] [--hidden 256] [--device cpu_numpy]
                                      [--save mlp.npz]
"""
import argparse
import time

import numpy as np

import needle as ndl
from needle import models
from needle.data import DataLoader, NDArrayDataset, load_mnist_split
from needle.serialization import save


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--hidden", type=int, nargs="+", default=[256])
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu_numpy", choices=["cpu_numpy", "cpu", "cuda"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", default=None, help="write the trained state dict (.npz) here")
    return p.parse_args(argv)


def train(args):
    """Returns (model, held-out accuracy, seconds)."""
    device = getattr(ndl, args.device)()
    if not device.enabled():
        raise SystemExit(f"device {args.device} is not available on this machine")
    np.random.seed(args.seed)
    X, y = load_mnist_split("train", flat=True)
    Xh, yh = load_mnist_split("heldout", flat=True)
    model = models.MLP(784, hidden=tuple(args.hidden), device=device)
    opt = ndl.optim.Adam(model.parameters(), lr=args.lr)
    loader = DataLoader(NDArrayDataset(X, y), batch_size=args.batch_size, shuffle=True,
                        device=device)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        acc, loss = models.train_epoch(model, loader, opt)
        print(f"epoch {epoch + 1}: train acc {acc:.4f}, loss {loss:.4f}")
    seconds = time.perf_counter() - start
    return model, models.accuracy(model, Xh, yh, device=device), seconds


def main(argv=None):
    args = parse_args(argv)
    model, heldout, seconds = train(args)
    print(f"held-out accuracy {heldout:.4f} (2,000 images) after {seconds:.1f} s of training")
    if args.save:
        save(model, args.save)
        print(f"saved state dict to {args.save}")


if __name__ == "__main__":
    main()
