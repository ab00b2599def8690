"""Lesson 8 -- what the first layer learns: look at the filters and at the feature maps.

Trains the MNIST CNN (``mnist_cnn()``, 32 first-layer 3x3 filters) and the CIFAR-10 CNN
(``cifar_cnn()``, 32 first-layer 3x3x3 filters, drawn in colour) briefly on subsets, then draws:

* the first-layer filters of each as an image grid (each filter min-max scaled on its own),
  before and after training;
* the feature maps of one test image after each conv layer (after BN + ReLU), first 8 channels.

It prints how far training moved the first-layer weights and the test accuracy reached.

    python examples/lessons/l8_first_layer.py --data-dir DIR     # ~4-6 min on 2 CPU cores
"""

from __future__ import annotations

import _common as C
import numpy as np

import minicnn as mc
from minicnn import nn, optim
from minicnn.models import cifar_cnn, mnist_cnn
from minicnn.plots import filter_grid


def feature_maps(model, x):
    """Outputs of every ReLU that follows a conv (one image), as NumPy arrays (C, H, W)."""
    maps, handles = [], []
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            handles.append(m.register_forward_hook(lambda mod, inp, out: maps.append(out.numpy()[0])))
    model.eval()
    with mc.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return [m for m in maps if m.ndim == 3]  # drop the ReLU of the dense head (cifar_cnn)


def main(argv=None):
    args = C.parse_args("l8_first_layer", __doc__.splitlines()[0], argv)
    C.start_report(args)
    rows, measured, figures = [], {}, []
    jobs = (
        (
            "MNIST",
            mnist_cnn,
            lambda: C.load_mnist(args, C.pick(args, 5000, 64), C.pick(args, 1000, 20)),
            0.01,
        ),
        (
            "CIFAR-10",
            cifar_cnn,
            lambda: C.load_cifar10(args, C.pick(args, 5000, 64), C.pick(args, 1000, 20)),
            0.02,
        ),
    )
    epochs = C.pick(args, 2, 1)
    for name, build, load, lr in jobs:
        train_set, test_set = load()
        mc.manual_seed(args.seed)
        model = build()
        conv1 = model[0]
        w0 = conv1.weight.numpy().copy()
        h = C.train(
            model, args, train_set, test_set, epochs, optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        )
        w1 = conv1.weight.numpy()
        change = float(np.linalg.norm(w1 - w0) / np.linalg.norm(w0))
        measured[name] = {"val_acc": h["val_acc"][-1], "relative_change": change}
        rows.append(
            (
                name,
                f"{build.__name__}()",
                f"{len(train_set):,}",
                epochs,
                C.pct(h["val_acc"][-1]),
                f"{tuple(w1.shape)}",
                f"{change:.2f}",
            )
        )
        tag = name.lower().replace("-", "")
        for label, w in (("initial", w0), ("trained", w1)):
            fig = filter_grid(w, title=f"{name}: first-layer filters, {label}")
            figures.append(C.save(fig, args, f"filters_{tag}_{label}.png"))
        x = C.as_batch(args, test_set.data[:1])
        maps = feature_maps(model, x)
        fig, axes = C.figure(9, len(maps), size=(1.3, 1.4))
        img = test_set.data[0]
        for row, fmap in enumerate(maps):
            ax = axes[row * 9]
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
            ax.set_title("input" if row == 0 else "", fontsize=8)
            ax.set_ylabel(f"conv {row + 1}\n{fmap.shape[1]}x{fmap.shape[2]}", fontsize=8)
            for c in range(8):
                a = axes[row * 9 + 1 + c]
                a.imshow(fmap[c], cmap="viridis")
                a.set_title(f"ch {c}", fontsize=7)
        for a in axes:
            a.set_xticks([])
            a.set_yticks([])
        fig.suptitle(f"{name}: feature maps after each conv block (BN + ReLU), one test image")
        figures.append(C.save(fig, args, f"feature_maps_{tag}.png"))
    C.table(
        [
            "data",
            "model",
            "training images",
            "epochs",
            "test accuracy",
            "conv1 weight",
            "relative change of conv1 weights",
        ],
        rows,
        title="Training behind the pictures",
        out=args.out,
    )
    measured["figures"] = [str(p) for p in figures]
    return measured


if __name__ == "__main__":
    C.run(main)
