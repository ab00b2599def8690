"""Shared plumbing of the example scripts: command line, device choice, and the report files.

Each example is ``main(argv=None)``: parse the options, load the data, build the model, call
``minicnn.train.fit`` and ``write_report``. Nothing here is specific to one dataset. The
scripts import it as ``common`` (Python puts the script's folder on ``sys.path``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import minicnn as mc
from minicnn.data import DataError
from minicnn.train import TrainingDiverged


def parse_args(argv, description, *, epochs, batch_size, lr, out, add_arguments=None):
    """The options every example takes; the defaults are the example's own.

    ``add_arguments(parser)`` may add options of one example (e.g. the ResNet depth).
    """
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--data-dir", default="./data", help="dataset root (torchvision layout); downloaded if absent"
    )
    p.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto = cuda if available"
    )
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr, help="learning rate (peak rate for one-cycle schedules)")
    p.add_argument("--seed", type=int, default=0, help="seeds weights, shuffling, augmentation and dropout")
    p.add_argument(
        "--limit-train", type=int, default=None, metavar="N", help="train on the first N images only"
    )
    p.add_argument(
        "--limit-test", type=int, default=None, metavar="N", help="test on the first N images only"
    )
    p.add_argument("--out", default=out, help="folder for the checkpoint, history and figures")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (one line per epoch only)")
    if add_arguments is not None:
        add_arguments(p)
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    return args


def epoch_printer(args):
    """With --no-progress, fit prints nothing: this callback prints one line per epoch instead."""
    from minicnn.train import format_epoch

    def print_epoch(epoch, history):
        print(format_epoch(history, -1, args.epochs), flush=True)

    return [print_epoch] if args.no_progress else []


def pick_device(choice: str) -> str:
    """'auto' -> 'cuda' when CuPy sees a GPU, else 'cpu'."""
    if choice == "auto":
        return "cuda" if mc.cuda_available() else "cpu"
    if choice == "cuda" and not mc.cuda_available():
        raise SystemExit("error: --device cuda, but CuPy is not installed or sees no GPU (try --device cpu)")
    return choice


def limit(dataset, n):
    return dataset if n is None or n >= len(dataset) else dataset.subset(n)


def first_conv_weight(model):
    """The weights (out, in, kH, kW) of the model's first Conv2d, or None."""
    from minicnn import nn

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.weight.numpy()
    return None


def write_report(model, history, test_set, test_loader, out, title):
    """Final test accuracy plus every file of the report; returns the test accuracy in [0, 1]."""
    from minicnn import plots
    from minicnn.serialization import save
    from minicnn.train import confusion_matrix, predict, save_history

    out = Path(out)
    pred, true = predict(model, test_loader)
    acc = float((pred == true).mean())
    print(f"test accuracy: {100 * acc:.2f}% ({int((pred == true).sum())}/{len(true)})")
    save_history(history, out)
    plots.training_curves(history, out / "curves.png", title=f"{title}: loss and accuracy (val = test set)")
    weight = first_conv_weight(model)
    if weight is not None:
        plots.filter_grid(weight, out / "filters.png", title=f"{title}: first-layer filters")
    cm = confusion_matrix(true, pred, len(test_set.classes))
    plots.confusion_matrix_plot(
        cm, test_set.classes, out / "confusion.png", title=f"{title}: confusion matrix (test)"
    )
    images = test_set.data[: len(true)]
    plots.misclassified_grid(images, true, pred, test_set.classes, out / "misclassified.png",
                             title=f"{title}: misclassified test images")  # fmt: skip
    save(model, out / "model.safetensors", metadata={"test_accuracy": f"{acc:.6f}"})
    print(f"wrote {out}/: model.safetensors, checkpoint.safetensors, history.json/.csv, curves.png, "
          "filters.png, confusion.png, misclassified.png, samples.png")  # fmt: skip
    return acc


def run(main, argv=None):
    """Run ``main(argv)``; a data or divergence problem ends with its one-line message, not a traceback."""
    t0 = time.perf_counter()
    try:
        result = main(argv)
    except (DataError, TrainingDiverged) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"total time: {time.perf_counter() - t0:.1f} s")
    return result
