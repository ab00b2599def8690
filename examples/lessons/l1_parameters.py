"""Lesson 1 -- parameters: a dense layer connects every input to every output, a convolution
shares one small kernel across the image.

Counts every number below from real minicnn modules (``sum(p.numel() for p in m.parameters())``)
and prints it beside the lesson's claim:

* ``Linear(784, 128)``: 784 * 128 weights + 128 biases = 100,480;
* ``Conv2d(1, 32, 3, padding=1)``: 32 * 1 * 3 * 3 + 32 = 320, whatever the image size;
* a dense layer from a 224x224x3 image to 1000 classes: 150,528,000 weights + 1000 biases;
* the MNIST CNN of ``minicnn.models.mnist_cnn()``: 50,378.

It also counts multiply-adds with ``minicnn.summary``: the convolution's few weights are used at
every position, so its compute grows with the image while its parameters do not.

    python examples/lessons/l1_parameters.py            # ~10 s (mostly allocating the 150M-weight layer)
"""

from __future__ import annotations

import _common as C

from minicnn import nn, summary
from minicnn.models import mnist_cnn


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def main(argv=None):
    args = C.parse_args("l1_parameters", __doc__.splitlines()[0], argv)
    C.start_report(args)
    # --quick swaps the 150M-weight layer for a 32x32x3 one (the formula is the same).
    side = C.pick(args, 224, 32)
    big_in = side * side * 3

    rows, measured = [], {}

    def add(key, label, module, formula, claim):
        n = n_params(module)
        measured[key] = n
        ok = "yes" if claim is None or n == claim else "NO"
        rows.append((label, formula, "-" if claim is None else f"{claim:,}", f"{n:,}", ok))

    add("linear", "Linear(784, 128)", nn.Linear(784, 128), "784*128 + 128", 100_480)
    add("conv", "Conv2d(1, 32, 3, padding=1)", nn.Conv2d(1, 32, 3, padding=1), "32*1*3*3 + 32", 320)
    add("conv_rgb", "Conv2d(3, 32, 3, padding=1)", nn.Conv2d(3, 32, 3, padding=1), "32*3*3*3 + 32", 896)
    dense = nn.Linear(big_in, 1000)
    add(
        "dense_big",
        f"Linear({side}*{side}*3 = {big_in:,}, 1000)",
        dense,
        f"{big_in:,}*1000 + 1000",
        150_529_000 if side == 224 else big_in * 1000 + 1000,
    )
    del dense  # 600 MB of float32 weights
    cnn = mnist_cnn()
    add("mnist_cnn", "mnist_cnn()", cnn, "sum over its layers", 50_378)
    C.table(
        ["module", "formula", "lesson's claim", "measured: parameters()", "match"],
        rows,
        title="Parameter counts",
        out=args.out,
    )

    # Same weights, bigger image: parameters stay, multiply-adds grow with the number of positions.
    conv = nn.Conv2d(1, 32, 3, padding=1)
    size_rows = []
    for hw in C.pick(args, (28, 56, 224), (28, 56)):
        s = summary(conv, (1, 1, hw, hw), verbose=False)
        lin = summary(nn.Sequential(nn.Flatten(), nn.Linear(hw * hw, 128)), (1, 1, hw, hw), verbose=False)
        size_rows.append(
            (
                f"{hw}x{hw}",
                f"{s.total_params:,}",
                f"{s.total_mult_adds:,}",
                f"{lin.total_params:,}",
                f"{lin.total_mult_adds:,}",
            )
        )
        measured[f"conv_mult_adds_{hw}"] = s.total_mult_adds
    C.table(
        [
            "input (1 channel)",
            "Conv2d(1, 32, 3, p=1) params",
            "its mult-adds",
            "Linear(H*W, 128) params",
            "its mult-adds",
        ],
        size_rows,
        title="Parameters vs image size",
        out=args.out,
    )

    print(summary(cnn, (1, 1, 28, 28), verbose=False))
    return measured


if __name__ == "__main__":
    C.run(main)
