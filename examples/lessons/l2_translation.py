"""Lesson 2 -- translation: a CNN tolerates shifted inputs far better than a dense network.

An MLP and the MNIST CNN (``minicnn.models.mnist_cnn``) are trained on the same MNIST subset to
a similar test accuracy, then evaluated on the test images shifted by 0..4 pixels in each of
the four directions (right, left, down, up; the empty border is filled with black, as the MNIST
background). The MLP has one weight per (pixel, unit): a digit moved by a few pixels lands on
weights that never saw it. The CNN slides the same filters everywhere and max-pools, so its
features move with the digit; only the final dense layer is position-specific.

    python examples/lessons/l2_translation.py --data-dir DIR     # ~4-6 min on 2 CPU cores
"""

from __future__ import annotations

import _common as C
import numpy as np

import minicnn as mc
from minicnn import optim
from minicnn.models import mnist_cnn

DIRECTIONS = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}


def shift(images, dy, dx):
    """Move uint8 images (N, H, W) by (dy, dx) pixels; the uncovered border is 0 (black)."""
    out = np.zeros_like(images)
    h, w = images.shape[1:3]
    src_y, dst_y = slice(max(0, -dy), h - max(0, dy)), slice(max(0, dy), h - max(0, -dy))
    src_x, dst_x = slice(max(0, -dx), w - max(0, dx)), slice(max(0, dx), w - max(0, -dx))
    out[:, dst_y, dst_x] = images[:, src_y, src_x]
    return out


def main(argv=None):
    args = C.parse_args("l2_translation", __doc__.splitlines()[0], argv)
    C.start_report(args)
    n_train, n_test = C.pick(args, 4000, 64), C.pick(args, 500, 20)
    train_set, test_set = C.load_mnist(args, n_train, n_test)
    max_shift = C.pick(args, 4, 1)

    models = {}
    mc.manual_seed(args.seed)
    models["MLP 784-256-10"] = (C.mlp((256,)), C.pick(args, 3, 1))
    mc.manual_seed(args.seed)
    models["MNIST CNN"] = (mnist_cnn(), 1)
    curves, measured, rows = {}, {}, []
    for name, (model, epochs) in models.items():
        n_params = sum(p.numel() for p in model.parameters())
        hist = C.train(model, args, train_set, None, epochs, optim.Adam(model.parameters(), lr=1e-3))
        acc = {}
        for s in range(max_shift + 1):
            dirs = DIRECTIONS.items() if s else [("none", (0, 0))]
            acc[s] = {
                d: C.accuracy(model, args, shift(test_set.data, s * dy, s * dx), test_set.targets)
                for d, (dy, dx) in dirs
            }
        curves[name] = acc
        mean = [float(np.mean(list(acc[s].values()))) for s in range(max_shift + 1)]
        measured[name] = {
            "params": n_params,
            "epochs": epochs,
            "mean_acc": mean,
            "acc": acc,
            "train_time_s": sum(hist["epoch_time_s"]),
        }
        rows.append((name, f"{n_params:,}", epochs, *(C.pct(m) for m in mean)))
    C.table(
        ["model", "params", "epochs", *(f"shift {s}px" for s in range(max_shift + 1))],
        rows,
        title=f"Test accuracy on shifted digits (mean over 4 directions; {len(test_set)} test images, "
        f"trained on {len(train_set):,})",
        out=args.out,
    )
    names = list(models)
    drop = {n: measured[n]["mean_acc"][0] - measured[n]["mean_acc"][-1] for n in names}
    C.table(
        ["", "lesson's claim", "measured"],
        [
            ("unshifted accuracy", "similar", " vs ".join(C.pct(measured[n]["mean_acc"][0]) for n in names)),
            (f"accuracy lost at {max_shift}px (MLP)", "large", f"{100 * drop[names[0]]:.1f} points"),
            (f"accuracy lost at {max_shift}px (CNN)", "far smaller", f"{100 * drop[names[1]]:.1f} points"),
        ],
        title="Claim vs measurement",
        out=args.out,
    )
    per_dir = [
        (name, d, *(C.pct(curves[name][s][d]) for s in range(1, max_shift + 1)))
        for name in names
        for d in DIRECTIONS
    ]
    C.table(
        ["model", "direction", *(f"{s}px" for s in range(1, max_shift + 1))],
        per_dir,
        title="Per direction",
        out=args.out,
    )

    fig, (a, b) = C.figure(2, 1, size=(5, 4))
    for name in names:
        a.plot(range(max_shift + 1), [100 * m for m in measured[name]["mean_acc"]], "o-", label=name)
    a.set(
        xlabel="shift (pixels)",
        ylabel="test accuracy (%)",
        title="accuracy vs shift (mean of 4 directions)",
        xticks=range(max_shift + 1),
        ylim=(0, 100),
    )
    a.legend()
    a.grid(True, alpha=0.3)
    img = test_set.data[0]
    strip = np.concatenate([shift(img[None], 0, s)[0] for s in range(max_shift + 1)], axis=1)
    b.imshow(strip, cmap="gray")
    b.set(title=f"one test digit shifted right by 0..{max_shift} px", xticks=[], yticks=[])
    C.save(fig, args, "translation.png")
    return measured


if __name__ == "__main__":
    C.run(main)
