"""Matplotlib figures for training runs: curves, image grids, filters, confusion matrix.

Every function draws on its own ``matplotlib.figure.Figure`` (no pyplot global state, works
on a headless machine), saves it to ``path`` as PNG when ``path`` is given, and returns it.
Images may be uint8 (0-255) or float (0-1), in layout (H, W), (H, W, C) or (C, H, W);
one-channel images are drawn in greyscale.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["image_grid", "training_curves", "filter_grid", "confusion_matrix_plot", "misclassified_grid"]


def _figure(figsize, layout="constrained"):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout=layout)


def _save(fig, path):
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    return fig


def _to_hwc(img):
    """One image as (H, W) greyscale or (H, W, 3) colour, for imshow."""
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = img.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3):
        raise ValueError(f"plots: expected an image (H, W), (H, W, C) or (C, H, W), got shape {img.shape}")
    return img


def image_grid(images, titles=None, path=None, title=None, ncols=None, title_colors=None):
    """A grid of images with an optional caption under each one."""
    n = len(images)
    if n == 0:
        raise ValueError("image_grid: no images to draw")
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    fig = _figure((1.5 * ncols, 1.7 * nrows + (0.4 if title else 0)), layout=None)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    fig.subplots_adjust(
        left=0.02, right=0.98, bottom=0.02, top=0.9 if title else 0.95, hspace=0.35, wspace=0.1
    )
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= n:
            continue
        img = _to_hwc(images[k])
        vmax = 255 if img.dtype == np.uint8 else 1.0
        if img.ndim == 2:
            ax.imshow(img, cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
        else:
            ax.imshow(img if img.dtype == np.uint8 else np.clip(img, 0, 1), interpolation="nearest")
        if titles is not None:
            color = title_colors[k] if title_colors is not None else "black"
            ax.set_title(str(titles[k]), fontsize=8, color=color)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def training_curves(history, path=None, title="Training curves"):
    """Loss and accuracy per epoch, train vs validation, from a ``minicnn.train.fit`` history."""
    from matplotlib.ticker import MaxNLocator

    epochs = history.get("epoch") or list(range(1, len(history["train_loss"]) + 1))
    fig = _figure((10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for ax, key, label in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy (%)")):
        for split, style in (("train", "o-"), ("val", "s--")):
            values = history.get(f"{split}_{key}")
            if values and any(v is not None for v in values):
                scale = 100.0 if key == "acc" else 1.0
                ys = [np.nan if v is None else v * scale for v in values]
                ax.plot(epochs, ys, style, label=split)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs only
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
    ax_loss.set_title("loss (cross-entropy)")
    ax_acc.set_title("accuracy")
    fig.suptitle(title)
    return _save(fig, path)


def filter_grid(weight, path=None, title="First-layer filters"):
    """Conv weights (out, in, kH, kW) as one mosaic: RGB when in == 3, else greyscale (mean over in).

    Each filter is min-max scaled on its own, so its pattern shows whatever its norm; filters
    are numbered row by row, left to right.
    """
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim != 4:
        raise ValueError(f"filter_grid: expected conv weights (out, in, kH, kW), got shape {w.shape}")
    n, _, kh, kw = w.shape
    imgs = w.transpose(0, 2, 3, 1) if w.shape[1] == 3 else w.mean(axis=1)[..., None]
    lo = imgs.min(axis=(1, 2, 3), keepdims=True)
    hi = imgs.max(axis=(1, 2, 3), keepdims=True)
    imgs = (imgs - lo) / np.maximum(hi - lo, 1e-12)
    ncols = math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    # One image with a 1-pixel white border around every filter (much faster than a subplot each).
    mosaic = np.ones((nrows * (kh + 1) + 1, ncols * (kw + 1) + 1, imgs.shape[-1]))
    for k in range(n):
        r, c = divmod(k, ncols)
        mosaic[1 + r * (kh + 1) : (r + 1) * (kh + 1), 1 + c * (kw + 1) : (c + 1) * (kw + 1)] = imgs[k]
    fig = _figure((min(2 + 0.5 * ncols, 10), min(1.5 + 0.5 * nrows, 10)))
    ax = fig.subplots()
    if mosaic.shape[-1] == 1:
        ax.imshow(mosaic[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([(kw + 1) * c + (kw + 1) / 2 for c in range(ncols)], [str(c) for c in range(ncols)])
    ax.set_yticks([(kh + 1) * r + (kh + 1) / 2 for r in range(nrows)], [str(r * ncols) for r in range(nrows)])
    ax.tick_params(length=0, labelsize=8)
    ax.set_xlabel("column")
    ax.set_ylabel("index of the row's first filter")
    kind = (
        "RGB" if w.shape[1] == 3 else ("greyscale" if w.shape[1] == 1 else f"mean over {w.shape[1]} inputs")
    )
    ax.set_title(f"{title}\n{n} filters {kh}x{kw} ({kind}), each scaled to its own min-max", fontsize=10)
    return _save(fig, path)


def confusion_matrix_plot(cm, classes, path=None, title="Confusion matrix (test set)"):
    """Counts of (true class, predicted class), with the count written in each cell."""
    cm = np.asarray(cm)
    k = cm.shape[0]
    fig = _figure((1.0 + 0.6 * k, 0.8 + 0.55 * k))
    ax = fig.subplots()
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_xticks(range(k), [str(c) for c in classes], rotation=45, ha="right")
    ax.set_yticks(range(k), [str(c) for c in classes])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > threshold else "black")  # fmt: skip
    ax.set_title(title)
    return _save(fig, path)


def misclassified_grid(images, true, pred, classes, path=None, n=25, title="Misclassified test images"):
    """The first ``n`` images whose prediction is wrong, captioned 'true -> predicted'."""
    true, pred = np.asarray(true), np.asarray(pred)
    wrong = np.flatnonzero(true != pred)[:n]
    if wrong.size == 0:
        fig = _figure((4, 1))
        fig.text(0.5, 0.5, "no misclassified images", ha="center", va="center")
        fig.suptitle(title)
        return _save(fig, path)
    titles = [f"{classes[true[i]]} -> {classes[pred[i]]}" for i in wrong]
    return image_grid([images[i] for i in wrong], titles, path=path, title=title + " (true -> predicted)",
                      title_colors=["red"] * len(wrong))  # fmt: skip
