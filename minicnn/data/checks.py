"""Look at the data before training on it: class balance, a grid of samples, channel statistics."""

from __future__ import annotations

import numpy as np

__all__ = ["class_balance", "sample_grid", "channel_stats"]


def class_balance(dataset, threshold=1.5, verbose=True) -> dict:
    """Count and percentage of each class; flags imbalance when max/min count > ``threshold``.

    Returns ``{"classes", "counts", "percent", "ratio", "imbalanced"}`` and prints a table
    (``verbose=False`` to keep quiet). A class with no images at all is always imbalance.
    """
    labels = np.asarray(dataset.targets)
    classes = list(getattr(dataset, "classes", None) or range(int(labels.max()) + 1))
    counts = np.bincount(labels, minlength=len(classes))
    total = int(counts.sum())
    percent = [100.0 * int(c) / total if total else 0.0 for c in counts]
    lo, hi = int(counts.min()), int(counts.max())
    ratio = hi / lo if lo else float("inf")
    result = {
        "classes": [str(c) for c in classes],
        "counts": [int(c) for c in counts],
        "percent": percent,
        "ratio": ratio,
        "imbalanced": ratio > threshold,
    }
    if verbose:
        width = max(5, *(len(c) for c in result["classes"]))
        print(f"{'class':<{width}}  {'count':>8}  {'share':>7}")
        for name, c, p in zip(result["classes"], result["counts"], percent):
            print(f"{name:<{width}}  {c:>8}  {p:>6.2f}%")
        print(f"{'total':<{width}}  {total:>8}")
        verdict = (
            f"IMBALANCED: the largest class has {ratio:.2f}x the images of the smallest (> {threshold}); "
            "consider class weights or resampling"
            if result["imbalanced"]
            else f"balanced: largest/smallest = {ratio:.2f} (<= {threshold})"
        )
        print(verdict)
    return result


def sample_grid(dataset, n=25, path=None, seed=0, title=None):
    """Save (and return) a figure of ``n`` random images captioned with their class names."""
    from minicnn.plots import image_grid

    n = min(int(n), len(dataset))
    idx = np.sort(np.random.default_rng(seed).choice(len(dataset), size=n, replace=False))
    classes = getattr(dataset, "classes", None)
    labels = np.asarray(dataset.targets)[idx]
    titles = [classes[k] if classes else str(k) for k in labels]
    name = getattr(dataset, "name", type(dataset).__name__)
    return image_grid(np.asarray(dataset.data)[idx], titles, path=path, title=title or f"{name}: {n} samples")


def channel_stats(dataset, verbose=False):
    """Per-channel mean and std of the pixels on the 0-1 scale (population std, as usually quoted).

    Exact and memory-light: a 256-bin histogram per channel replaces any float copy of the
    data. Returns ``(mean, std)`` as tuples of Python floats, ready for ``Normalize(mean, std)``.
    """
    data = np.asarray(dataset.data)
    if data.dtype != np.uint8:
        raise TypeError(f"channel_stats: expected uint8 images, got {data.dtype}")
    channels = data.reshape(-1, 1) if data.ndim == 3 else data.reshape(-1, data.shape[-1])
    levels = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(channels.shape[1]):
        hist = np.bincount(channels[:, c], minlength=256).astype(np.float64)
        total = hist.sum()
        mean = float((hist * levels).sum() / total)
        var = float((hist * (levels - mean) ** 2).sum() / total)
        means.append(mean)
        stds.append(var**0.5)
    if verbose:
        print(
            "channel mean:",
            ", ".join(f"{m:.4f}" for m in means),
            "  std:",
            ", ".join(f"{s:.4f}" for s in stds),
        )
    return tuple(means), tuple(stds)
