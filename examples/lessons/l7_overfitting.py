"""Lesson 7 -- overfitting, and three remedies: dropout, weight decay, data augmentation.

1. A large MLP (784-512-512-10, 670k parameters) on only 1,000 MNIST images: the training
   accuracy reaches ~100% while the validation accuracy stalls. Then the same with dropout
   (p = 0.5), with weight decay, and with both (curves side by side).
2. A small CNN on 1,000 CIFAR-10 images, with and without random crop (padding 4) + horizontal
   flip augmentation.
3. Is an augmentation label-preserving? A horizontal flip of a CIFAR-10 image is still the same
   class (the trained CNN's accuracy barely changes on flipped test images); a vertical flip of a
   6 or a 9 is no longer that digit (the MNIST model's accuracy on flipped 6s and 9s collapses).

    python examples/lessons/l7_overfitting.py --data-dir DIR     # ~4-6 min on 2 CPU cores
"""

from __future__ import annotations

import _common as C
import numpy as np

import minicnn as mc
from minicnn import nn, optim
from minicnn.data import Compose, RandomCrop, RandomHorizontalFlip


def small_cifar_cnn():
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 8 * 8, 10),
    )


def main(argv=None):
    args = C.parse_args("l7_overfitting", __doc__.splitlines()[0], argv)
    C.start_report(args)
    measured = {}

    # ---------------------------------------------------------------- 1. MLP on 1,000 MNIST images
    n_small, n_val = C.pick(args, 1000, 100), C.pick(args, 2000, 50)
    mnist_train, mnist_val = C.load_mnist(args, n_small, n_val)
    epochs = C.pick(args, 30, 1)
    variants = {
        "plain": (0.0, 0.0),
        "dropout 0.5": (0.5, 0.0),
        "weight decay 1e-3": (0.0, 1e-3),
        "dropout + weight decay": (0.5, 1e-3),
    }
    hists, rows, mlps = {}, [], {}
    for name, (p, wd) in variants.items():
        mc.manual_seed(args.seed)
        model = C.mlp((512, 512), dropout=p)
        opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=wd)
        h = C.train(model, args, mnist_train, mnist_val, epochs, opt)
        hists[name], mlps[name] = h, model
        best = int(np.argmax(h["val_acc"]))
        measured[name] = {
            "train_acc": h["train_acc"][-1],
            "val_acc": h["val_acc"][-1],
            "best_val": h["val_acc"][best],
        }
        gap = h["train_acc"][-1] - h["val_acc"][-1]
        rows.append(
            (
                name,
                C.pct(h["train_acc"][-1]),
                C.pct(h["val_acc"][-1]),
                f"{100 * gap:.1f} points",
                f"{C.pct(h['val_acc'][best])} (epoch {best + 1})",
            )
        )
    C.table(
        ["MLP 784-512-512-10", "train acc", "val acc", "gap", "best val acc"],
        rows,
        title=f"{len(mnist_train):,} MNIST training images, {len(mnist_val):,} validation, {epochs} epochs, "
        "SGD lr 0.05 momentum 0.9",
        out=args.out,
    )

    # ---------------------------------------------------------------- 2. CIFAR-10 augmentation
    cifar_train, cifar_val = C.load_cifar10(args, C.pick(args, 1000, 64), C.pick(args, 1000, 32))
    cifar_epochs = C.pick(args, 12, 1)
    augment = Compose([RandomCrop(32, padding=4), RandomHorizontalFlip()])
    cifar_hists, cnns, rows = {}, {}, []
    for name, transform in (("no augmentation", None), ("crop + flip", augment)):
        mc.manual_seed(args.seed)
        model = small_cifar_cnn()
        opt = optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
        h = C.train(model, args, cifar_train, cifar_val, cifar_epochs, opt, transform=transform)
        cifar_hists[name], cnns[name] = h, model
        measured[f"cifar {name}"] = {"train_acc": h["train_acc"][-1], "val_acc": h["val_acc"][-1]}
        rows.append((name, C.pct(h["train_acc"][-1]), C.pct(h["val_acc"][-1]), C.pct(max(h["val_acc"]))))
    C.table(
        ["small CNN on CIFAR-10", "train acc", "val acc", "best val acc"],
        rows,
        title=f"{len(cifar_train):,} CIFAR-10 training images, {cifar_epochs} epochs",
        out=args.out,
    )

    # ---------------------------------------------------------------- 3. label-preserving?
    cnn = cnns["crop + flip"]
    x = cifar_val.data
    acc_plain = C.accuracy(cnn, args, x, cifar_val.targets)
    acc_hflip = C.accuracy(cnn, args, x[:, :, ::-1], cifar_val.targets)
    mlp = mlps["dropout + weight decay"]
    digits = np.isin(mnist_val.targets, (6, 9))
    d_img, d_lab = mnist_val.data[digits], mnist_val.targets[digits]
    pred_up = C.predict(mlp, args, d_img)
    pred_vflip = C.predict(mlp, args, d_img[:, ::-1, :])
    other = np.where(d_lab == 6, 9, 6)
    rows = [
        ("CIFAR-10 val, horizontal flip", len(x), C.pct(acc_plain), C.pct(acc_hflip), "-"),
        (
            "MNIST val 6s and 9s, vertical flip",
            len(d_lab),
            C.pct(float((pred_up == d_lab).mean())),
            C.pct(float((pred_vflip == d_lab).mean())),
            C.pct(float((pred_vflip == other).mean())),
        ),
    ]
    C.table(
        ["test images", "n", "accuracy as is", "accuracy flipped", "flipped 6 <-> 9 predicted as the other"],
        rows,
        title="Label-preserving check (models trained above)",
        out=args.out,
    )
    measured["hflip"] = (acc_plain, acc_hflip)
    measured["vflip_69"] = (float((pred_up == d_lab).mean()), float((pred_vflip == d_lab).mean()))

    # ---------------------------------------------------------------- figures
    fig, axes = C.figure(3, 1, size=(4.5, 3.8))
    for name, h in hists.items():
        (line,) = axes[0].plot(h["epoch"], [100 * v for v in h["val_acc"]], label=f"{name} (val)")
        axes[0].plot(h["epoch"], [100 * v for v in h["train_acc"]], ls=":", color=line.get_color())
    axes[0].set(xlabel="epoch", ylabel="accuracy (%)", title="MNIST, 1,000 images: train (dotted) vs val")
    axes[0].legend(fontsize=7)
    for name, h in cifar_hists.items():
        (line,) = axes[1].plot(h["epoch"], [100 * v for v in h["val_acc"]], label=f"{name} (val)")
        axes[1].plot(h["epoch"], [100 * v for v in h["train_acc"]], ls=":", color=line.get_color())
    axes[1].set(xlabel="epoch", ylabel="accuracy (%)", title="CIFAR-10, 1,000 images: train (dotted) vs val")
    axes[1].legend(fontsize=7)
    for name, h in hists.items():
        axes[2].plot(h["epoch"], h["val_loss"], label=name)
    axes[2].set(xlabel="epoch", ylabel="validation loss", title="MNIST MLP: validation loss")
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.grid(True, alpha=0.3)
    C.save(fig, args, "overfitting.png")

    from minicnn.plots import image_grid

    k = min(4, len(x))
    sixes = d_img[d_lab == 6][:k]
    nines = d_img[d_lab == 9][:k]
    pics = [*x[:k], *x[:k, :, ::-1], *sixes, *sixes[:, ::-1], *nines, *nines[:, ::-1]]
    titles = [
        *(f"{cifar_val.classes[c]}" for c in cifar_val.targets[:k]),
        *(["h-flipped"] * k),
        *(["6"] * len(sixes)),
        *(["6 v-flipped"] * len(sixes)),
        *(["9"] * len(nines)),
        *(["9 v-flipped"] * len(nines)),
    ]
    title = "horizontal flip keeps CIFAR labels; vertical flip of 6/9 does not"
    fig = image_grid(pics, titles, ncols=2 * k, title=title)
    C.save(fig, args, "flips.png")
    return measured


if __name__ == "__main__":
    C.run(main)
