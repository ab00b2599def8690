"""Lesson 5 -- receptive field: how many input pixels one output unit can see.

For layers with kernel k and stride s (summed over the chain, per spatial dimension):

    r_l = r_{l-1} + (k_l - 1) * j_{l-1}        j_l = j_{l-1} * s_l        (r_0 = 1, j_0 = 1)

``minicnn.summary`` computes r (RF), j (Jump) and the centre of the first unit (Start) for every
layer. This script prints them for three networks -- three stride-1 3x3 convolutions (r = 7),
the same with a stride-2 max-pool after the first one, and the MNIST CNN -- then checks them
empirically: it back-propagates from ONE output unit (the centre one) to the input and measures
the region where the input gradient is non-zero.

The check uses a linear copy of each network with random weights (ReLU and dropout removed,
max-pool replaced by an average-pool with the same window), so no unit is dead and every pixel of
the receptive field gets a non-zero gradient; the region depends only on the windows, not on
the weights. A second check runs the MNIST CNN as it is (ReLU, max-pool) on random positive
images: there one image only reaches part of the field (max-pool routes the gradient through
one pixel per window), and the union over many images fills it.

    python examples/lessons/l5_receptive_field.py        # ~10 s, no data needed
"""

from __future__ import annotations

import _common as C
import numpy as np

import minicnn as mc
from minicnn import nn, summary
from minicnn.models import mnist_cnn

_SKIP = ("ReLU", "LeakyReLU", "ELU", "GELU", "SiLU", "Sigmoid", "Tanh", "Dropout", "BatchNorm2d", "Identity")
_STOP = ("Flatten", "Linear", "AdaptiveAvgPool2d")


def spatial_layers(model):
    """The model's leaf layers, in order, up to the first one that mixes all positions (Flatten, Linear)."""
    layers = []
    for _, m in model.named_modules():
        if any(True for _ in m.children()):
            continue  # a container: its leaves come next
        if type(m).__name__ in _STOP:
            break
        layers.append(m)
    return layers


def linear_copy(layers):
    """Same windows, no dead zones: activations/dropout/BN dropped, max-pool -> avg-pool (same window)."""
    out = []
    for m in layers:
        name = type(m).__name__
        if name in _SKIP:
            continue
        if isinstance(m, nn.MaxPool2d):
            out.append(nn.AvgPool2d(m.kernel_size, m.stride, m.padding))
        else:
            out.append(m)
    return nn.Sequential(*out)


def gradient_region(net, in_channels, size, n_images=1, positive=False, seed=0):
    """|d out[centre] / d input| summed over images and channels, (H, W); and the centre unit's (row, col)."""
    rng = np.random.default_rng(seed)
    x = (
        rng.random((n_images, in_channels, size, size))
        if positive
        else np.ones((n_images, in_channels, size, size))
    )
    x = mc.tensor(x, dtype=mc.float64, requires_grad=True)
    # The textbook tier (im2col): a pixel outside the field gets exactly 0. The kernels tier computes
    # 3x3 convolutions by Winograd (docs/backprop/winograd.md), whose transforms add and subtract
    # values that cancel only up to rounding, leaving ~1e-17 where the exact gradient is 0.
    with mc.use_kernels(False):
        out = net(x)
        h, w = out.shape[-2:]
        ci, cj = h // 2, w // 2
        # One output unit per image: the most active channel at the centre (a ReLU unit at 0 passes no
        # gradient). Summing over images keeps their gradients apart (image n only reaches x[n]).
        channel = out.numpy()[:, :, ci, cj].argmax(axis=1)
        out[np.arange(len(channel)), channel, ci, cj].sum().backward()
    return np.abs(x.grad.numpy()).sum(axis=(0, 1)), (ci, cj)


def extent(grad_map):
    """(first row, last row, first col, last col) where the gradient is non-zero."""
    rows = np.flatnonzero(grad_map.max(axis=1) > 0)
    cols = np.flatnonzero(grad_map.max(axis=0) > 0)
    if rows.size == 0:
        raise RuntimeError(
            "l5: the chosen output unit passes no gradient at all (a dead unit); try another --seed"
        )
    return rows[0], rows[-1], cols[0], cols[-1]


def main(argv=None):
    args = C.parse_args("l5_receptive_field", __doc__.splitlines()[0], argv)
    C.start_report(args)
    width = C.pick(args, 8, 2)
    nets = {
        "3 x conv3x3 (stride 1)": (
            nn.Sequential(
                nn.Conv2d(1, width, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(width, width, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(width, width, 3, padding=1),
            ),
            7,
        ),
        "conv3x3, maxpool2 (stride 2), conv3x3, conv3x3": (
            nn.Sequential(
                nn.Conv2d(1, width, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(width, width, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(width, width, 3, padding=1),
            ),
            1 + 2 + 1 + 2 * 2 + 2 * 2,
        ),
        "MNIST CNN (mnist_cnn(), conv part)": (mnist_cnn(), None),
    }
    rows, measured, maps = [], {}, []
    for label, (model, claim) in nets.items():
        layers = spatial_layers(model)
        chain = nn.Sequential(*layers)
        s = summary(chain, (1, 1, 28, 28), verbose=False)
        last = [layer for layer in s.layers if layer.rf is not None][-1]
        r, j, start = last.rf[0], last.jump[0], last.start[0]
        print(f"{label}: per-layer receptive field from minicnn.summary")
        print("  " + ", ".join(f"{layer.type} r={layer.rf[0]} j={layer.jump[0]}" for layer in s.layers))
        size = 2 * r + 3 * j + 1  # big enough that the centre unit's field lies inside the image
        lin = linear_copy(layers).double()
        g, (ci, cj) = gradient_region(lin, 1, size)
        r0, r1, c0, c1 = extent(g)
        # Unit (ci, cj) sees pixels [start + ci*j - r/2, start + ci*j + r/2); pixel k covers [k, k+1).
        expected_first = start + ci * j - r / 2
        maps.append((label, g, r, (r0, c0)))
        measured[label] = {
            "r": r,
            "j": j,
            "measured": (r1 - r0 + 1, c1 - c0 + 1),
            "first": (r0, c0),
            "expected_first": expected_first,
        }
        rows.append(
            (
                label,
                "-" if claim is None else claim,
                r,
                j,
                f"{r1 - r0 + 1} x {c1 - c0 + 1}",
                f"{r0},{c0} (formula {expected_first:g})",
                "yes" if (r1 - r0 + 1, c1 - c0 + 1) == (r, r) and r0 == expected_first else "NO",
            )
        )
    C.table(
        [
            "network",
            "lesson's claim r",
            "summary: r",
            "summary: jump",
            "measured non-zero gradient",
            "first pixel row,col",
            "match",
        ],
        rows,
        title="Receptive field: formula vs back-propagation",
        out=args.out,
    )

    # The real network (ReLU, max-pool), random weights, random positive images: union of the regions.
    layers = spatial_layers(nets["MNIST CNN (mnist_cnn(), conv part)"][0])
    # eval(): in train mode BatchNorm normalises with statistics of the whole batch and every position,
    # so every pixel would reach every unit through the mean and variance.
    real = nn.Sequential(*layers).double().eval()
    r = measured["MNIST CNN (mnist_cnn(), conv part)"]["r"]
    size = 2 * r + 13
    union_rows = []
    for n in C.pick(args, (1, 8, 64), (1, 4)):
        g, _ = gradient_region(real, 1, size, n_images=n, positive=True, seed=args.seed)
        r0, r1, c0, c1 = extent(g)
        union_rows.append((n, f"{r1 - r0 + 1} x {c1 - c0 + 1}", int((g > 0).sum()), r * r))
        measured[f"real_union_{n}"] = (r1 - r0 + 1, c1 - c0 + 1, int((g > 0).sum()))
    # The same network in train mode: BatchNorm's batch statistics connect every pixel to every unit.
    g, _ = gradient_region(real.train(), 1, size, n_images=C.pick(args, 8, 4), positive=True, seed=args.seed)
    r0, r1, c0, c1 = extent(g)
    union_rows.append(
        (
            f"{C.pick(args, 8, 4)}, train mode (BN batch statistics)",
            f"{r1 - r0 + 1} x {c1 - c0 + 1}",
            int((g > 0).sum()),
            f"{r * r} (image {size} x {size})",
        )
    )
    measured["real_train_mode"] = (r1 - r0 + 1, c1 - c0 + 1)
    C.table(
        ["random positive images", "extent of non-zero gradient", "non-zero pixels", "r x r"],
        union_rows,
        title="MNIST CNN as is (ReLU, max-pool): region reached by one unit's gradient",
        out=args.out,
    )

    fig, axes = C.figure(len(maps), 1, size=(4.2, 4))
    for ax, (label, g, r, (r0, c0)) in zip(axes, maps):
        im = ax.imshow(g / g.max(), cmap="magma")
        from matplotlib.patches import Rectangle

        ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), r, r, fill=False, edgecolor="cyan", lw=1.5))
        ax.set_title(f"{label}\nRF r = {r} (cyan box)", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes, shrink=0.8, label="|d unit / d pixel| (normalised)")
    fig.suptitle("Gradient of the centre output unit w.r.t. the input (linear copy, random weights)")
    C.save(fig, args, "receptive_field.png")
    return measured


if __name__ == "__main__":
    C.run(main)
