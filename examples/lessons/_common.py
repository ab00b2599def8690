"""Shared plumbing of the lesson scripts: options, data subsets, a small training helper, tables, figures.

Every lesson is ``main(argv=None) -> dict``: it parses the common options below, runs its
experiment with minicnn only, prints a table (the lesson's claim beside the measured number),
writes ``table.md`` and its figures into ``--out`` and returns the measured numbers (the tests
read them). The scripts import this file as ``_common`` (Python puts the script's folder on
``sys.path``).

Common options: ``--data-dir`` (dataset root, torchvision layout; CIFAR-10 as
``cifar10/cifar10_uint8.npz``), ``--device`` (auto/cpu/cuda), ``--seed``, ``--out`` (default
``runs/lessons/<name>``) and ``--quick`` (a tiny run that only proves the script works).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import minicnn as mc
from minicnn.data import CIFAR10, MNIST, DataLoader, FashionMNIST, Normalize

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


# ============================================================================ options
def parse_args(name, description, argv=None, add_options=None):
    """The options every lesson takes; ``add_options(parser)`` adds the lesson's own."""
    p = argparse.ArgumentParser(
        prog=f"{name}.py", description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--data-dir", default="./data", help="dataset root (MNIST/raw/..., cifar10/cifar10_uint8.npz)"
    )
    p.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto = cuda if available"
    )
    p.add_argument("--seed", type=int, default=0, help="seeds weights, data subsets, shuffling and dropout")
    p.add_argument("--out", default=f"runs/lessons/{name}", help="folder for table.md and the figures")
    p.add_argument(
        "--quick", action="store_true", help="a tiny run (seconds) that only checks the script works"
    )
    if add_options is not None:
        add_options(p)
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if mc.cuda_available() else "cpu"
    elif args.device == "cuda" and not mc.cuda_available():
        p.error("--device cuda, but CuPy is not installed or sees no GPU (use --device cpu)")
    args.out = Path(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    mc.manual_seed(args.seed)
    return args


def pick(args, full, quick):
    """``full`` normally, ``quick`` under ``--quick``: keeps the two sizes of each experiment side by side."""
    return quick if args.quick else full


# ============================================================================ data
def random_subset(dataset, n, seed=0):
    """``n`` images drawn at random (without replacement, kept in their original order)."""
    if n is None or n >= len(dataset):
        return dataset
    idx = np.sort(np.random.default_rng(seed).choice(len(dataset), size=n, replace=False))
    return dataset.subset(idx)


def load_mnist(args, n_train=None, n_test=None, fashion=False):
    """(train, test) MNIST (or Fashion-MNIST) datasets, optionally random subsets of n_train / n_test."""
    cls = FashionMNIST if fashion else MNIST
    train = cls(args.data_dir, train=True)
    test = cls(args.data_dir, train=False)
    return random_subset(train, n_train, args.seed), random_subset(test, n_test, args.seed + 1)


def load_cifar10(args, n_train=None, n_test=None):
    """(train, test) CIFAR-10 from ``--data-dir/cifar10/cifar10_uint8.npz``, optionally random subsets."""
    train = CIFAR10(args.data_dir, train=True, download=False)
    test = CIFAR10(args.data_dir, train=False, download=False)
    return random_subset(train, n_train, args.seed), random_subset(test, n_test, args.seed + 1)


def normalizer(dataset):
    """The usual per-channel Normalize for MNIST-like (1 channel) or CIFAR-10 (3 channels) images."""
    return Normalize(MNIST_MEAN, MNIST_STD) if dataset.data.ndim == 3 else Normalize(CIFAR_MEAN, CIFAR_STD)


def loader(args, dataset, batch_size=64, shuffle=False, transform=None, seed=None):
    """A DataLoader on ``args.device`` that normalises (and optionally augments: ``transform``) each batch."""
    norm = normalizer(dataset)
    if transform is not None:
        from minicnn.data import Compose

        norm = Compose([transform, norm])
    seed = args.seed if seed is None else seed
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, device=args.device, transform=norm, seed=seed
    )


def as_batch(args, images):
    """uint8 images (N, H, W) or (N, H, W, C) -> a normalised float32 Tensor (N, C, H, W) on the device."""
    x = np.asarray(images)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    x = x.astype(np.float32) / 255.0
    x = (Normalize(MNIST_MEAN, MNIST_STD) if x.shape[1] == 1 else Normalize(CIFAR_MEAN, CIFAR_STD))(x)
    return mc.tensor(np.ascontiguousarray(x), device=args.device)


def accuracy(model, args, images, labels, batch_size=500):
    """Accuracy (in [0, 1]) of ``model`` in eval mode on uint8 ``images`` with int ``labels``."""
    preds = predict(model, args, images, batch_size)
    return float((preds == np.asarray(labels)).mean())


def predict(model, args, images, batch_size=500):
    """Predicted classes (NumPy int64) of ``model`` in eval mode on uint8 images."""
    was_training = model.training
    model.eval()
    out = []
    try:
        with mc.no_grad():
            for i in range(0, len(images), batch_size):
                out.append(model(as_batch(args, images[i : i + batch_size])).numpy().argmax(axis=1))
    finally:
        model.train(was_training)
    return np.concatenate(out)


def train(model, args, train_set, test_set, epochs, optimizer, batch_size=64, transform=None, shuffle=True):
    """``minicnn.train.fit`` on normalised loaders; returns its history (accuracies in [0, 1])."""
    from minicnn.train import fit

    train_loader = loader(args, train_set, batch_size, shuffle=shuffle, transform=transform)
    test_loader = loader(args, test_set, 500) if test_set is not None else None
    return fit(model, train_loader, test_loader, optimizer, epochs=epochs, progress=False)


def train_steps(model, optimizer, batches, eval_every=None, evaluate=None):
    """The training loop written out (zero_grad, forward, loss, backward, step) with the loss of every step.

    ``batches`` yields ``(images, labels)`` Tensors (a DataLoader, or several epochs of one).
    Stops at the first NaN/infinite loss instead of letting it reach the weights; returns
    ``{"loss": [per-step losses], "diverged_at": step or None, "evals": [(step, evaluate())...]}``.
    """
    import math

    from minicnn.nn import functional as F

    model.train()
    losses, evals, diverged_at = [], [], None
    for step, (x, y) in enumerate(batches, start=1):
        optimizer.zero_grad()
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging run overflows: that is the point
            loss = F.cross_entropy(model(x), y)
            value = float(loss.item())
            losses.append(value)
            if not math.isfinite(value):
                diverged_at = step
                break
            loss.backward()
            optimizer.step()
        if eval_every and evaluate is not None and step % eval_every == 0:
            evals.append((step, evaluate()))
            model.train()
    return {"loss": losses, "diverged_at": diverged_at, "evals": evals}


def epochs_of(loader, n):
    """``n`` passes over ``loader`` as one stream of batches."""
    for _ in range(n):
        yield from loader


def mlp(hidden=(128,), in_features=784, num_classes=10, dropout=0.0):
    """Flatten -> [Linear -> ReLU (-> Dropout)] per hidden size -> Linear: the lessons' dense baseline."""
    from minicnn import nn

    layers, width = [nn.Flatten()], in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    return nn.Sequential(*layers, nn.Linear(width, num_classes))


# ============================================================================ output
def table(headers, rows, title=None, out=None, name="table.md"):
    """Print a Markdown table (paste-ready for the docs page) and append it to ``out/name``."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def line(values):
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"

    text = [f"**{title}**", ""] if title else []
    text += [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    text += [line(r) for r in cells]
    text = "\n".join(text) + "\n"
    print(text)
    if out is not None:
        with open(Path(out) / name, "a") as f:
            f.write(text + "\n")
    return text


def start_report(args):
    """Begin a fresh ``table.md`` (each run rewrites it)."""
    (args.out / "table.md").write_text("")


def figure(ncols=1, nrows=1, size=(5, 4)):
    """A Matplotlib figure (no pyplot state, headless) and its axes (a flat list)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, list(axes.flat)


def save(fig, args, filename):
    """Save ``fig`` as ``out/filename`` (PNG, 100 dpi) and say so."""
    path = args.out / filename
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")
    return path


def pct(x, digits=1):
    """0.1234 -> '12.3%'."""
    return f"{100 * x:.{digits}f}%"


def run(main, argv=None):
    """Run a lesson's ``main(argv)`` and print its wall-clock time."""
    t0 = time.perf_counter()
    result = main(argv)
    print(f"total time: {time.perf_counter() - t0:.1f} s", file=sys.stdout)
    return result
