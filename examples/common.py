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
from minicnn.train import CheckpointError, TrainingDiverged


def _number(kind, low, *, strict=False, high=None, shown=None):
    """An argparse ``type``: ``kind`` (int or float) with ``low <= value`` (``low < value`` if
    ``strict``), and ``value <= high`` when given; NaN and infinities are refused. A bad value ends
    the script as argparse does: the usage line, then ``prog: error: argument --x: ...`` (exit status 2)."""
    noun = "an integer" if kind is int else "a number"
    bound = f"> {low}" if strict else f">= {low}"

    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if (value <= low if strict else value < low) or (high is not None and value > high):
            within = bound if high is None else f"in {shown or f'[{low}, {high}]'}"
            raise argparse.ArgumentTypeError(f"must be {within}, got {text}")
        return value

    return convert


positive_int = _number(int, 1)
# PyTorch's range of seeds; a negative seed s means s + 2**64 (see minicnn.manual_seed)
torch_seed = _number(int, -(2**63), high=2**64 - 1, shown="[-2**63, 2**64 - 1]")


def parse_args(argv, description, *, epochs, batch_size, lr, out, add_arguments=None):
    """The options every example takes; the defaults are the example's own.

    ``add_arguments(parser)`` may add options of one example (e.g. the ResNet depth). Every
    numeric option is checked here, so a bad value ends the script with one ``error:`` line.
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
    p.add_argument("--epochs", type=positive_int, default=epochs)
    p.add_argument("--batch-size", type=positive_int, default=batch_size)
    p.add_argument(
        "--lr", type=_number(float, 0, strict=True), default=lr,
        help="learning rate (peak rate for one-cycle schedules)",
    )  # fmt: skip
    p.add_argument(
        "--seed", type=torch_seed, default=0,
        help="seeds weights, shuffling, augmentation and dropout (negative seeds as in PyTorch)",
    )  # fmt: skip
    p.add_argument(
        "--limit-train", type=positive_int, default=None, metavar="N", help="train on the first N images only"
    )
    p.add_argument(
        "--limit-test", type=positive_int, default=None, metavar="N", help="test on the first N images only"
    )
    p.add_argument("--out", default=out, help="folder for the checkpoint, history and figures")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (one line per epoch only)")
    p.add_argument(
        "--distributed", action="store_true",
        help="data-parallel over the processes of mpiexec / python -m minicnn.distributed.run "
        "(on by itself when there are several); --batch-size is then the global batch",
    )  # fmt: skip
    p.add_argument(
        "--sync-bn", action="store_true", help="BatchNorm statistics over all processes (SyncBatchNorm)"
    )
    if add_arguments is not None:
        add_arguments(p)
    args = p.parse_args(argv)
    for folder in (Path(args.out), *Path(args.out).parents):  # the first part of --out that exists
        if folder.exists():
            if not folder.is_dir():
                p.error(f"argument --out: {str(folder)!r} is a file; --out must name a folder")
            break
    return args


def setup_distributed(args):
    """Start data-parallel training when asked (``--distributed``) or launched with several processes.

    Sets ``args.rank``, ``args.world_size`` and ``args.per_rank_batch``: ``--batch-size`` stays the
    global batch (as in PyTorch's ImageNet example), split evenly over the processes, so the learning
    rate needs no scaling. On ranks other than 0, printing is switched off: only rank 0 prints and
    writes files. Says the global batch and the learning rate in one line.
    """
    import os

    from minicnn import distributed as dist

    args.rank, args.world_size, args.per_rank_batch = 0, 1, args.batch_size
    if not (args.distributed or dist.env.launched_world_size() > 1):
        return args
    dist.init_process_group()
    args.rank, args.world_size = dist.get_rank(), dist.get_world_size()
    if args.batch_size % args.world_size:
        raise SystemExit(
            f"error: --batch-size {args.batch_size} (the global batch) must be a multiple of the "
            f"{args.world_size} processes"
        )
    args.per_rank_batch = args.batch_size // args.world_size
    if args.rank != 0:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (rank 0 prints for the job)
    print(f"distributed: {args.world_size} processes x {args.per_rank_batch} images = global batch "
          f"{args.batch_size}, learning rate {args.lr:g} (as one process with --batch-size "
          f"{args.batch_size}: no scaling){', SyncBatchNorm' if args.sync_bn else ''}")  # fmt: skip
    return args


def train_loader(dataset, args, **kwargs):
    """The training DataLoader: shuffled by ``--seed``; with several processes, each takes its share
    of every epoch (DistributedSampler, the same ``--seed`` on every rank; ``fit`` calls its
    set_epoch) in batches of its part of the global batch, with augmentation drawn per rank."""
    from minicnn.data import DataLoader, DistributedSampler

    if args.world_size == 1:
        return DataLoader(dataset, args.batch_size, shuffle=True, seed=loader_seed(args), **kwargs)
    sampler = DistributedSampler(dataset, args.world_size, args.rank, shuffle=True, seed=loader_seed(args),
                                 drop_last=kwargs.get("drop_last", False))  # fmt: skip
    augment_seed = (loader_seed(args) + args.rank) % 2**64  # each rank its own augmentation draws
    return DataLoader(dataset, args.per_rank_batch, sampler=sampler, seed=augment_seed, **kwargs)


def wrap_model(model, args):
    """``--sync-bn``: BatchNorm -> SyncBatchNorm; with several processes: DistributedDataParallel."""
    from minicnn import nn
    from minicnn.nn.parallel import DistributedDataParallel

    if args.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return DistributedDataParallel(model) if args.world_size > 1 else model


def unwrap(model):
    """The model inside DistributedDataParallel (what rank 0 saves and reports on)."""
    return getattr(model, "module", model)


def process_seed(args) -> int:
    """``--seed`` for this process's RNG (weights, dropout): as given on rank 0, whose weights
    DistributedDataParallel sends to all; ``--seed`` + rank on the others, so that their dropout
    masks differ (with one seed, every rank would drop the same units for its own images)."""
    return args.seed if getattr(args, "rank", 0) == 0 else (args.seed + args.rank) % 2**64


def loader_seed(args) -> int:
    """``--seed`` for the data loader's generator: a negative seed s stands for s + 2**64, as in
    ``minicnn.manual_seed`` (and ``torch.manual_seed``)."""
    return args.seed % 2**64


def require_batches(loader, args, drop_last) -> None:
    """End with one ``error:`` line when the training loader would yield no batch at all."""
    if len(loader) == 0:
        n = len(loader.dataset)
        why = " (incomplete batches are dropped)" if drop_last else ""
        raise SystemExit(
            f"error: {n} training image(s) make no batch of --batch-size {args.batch_size}{why}: "
            "lower --batch-size or raise --limit-train"
        )


def epoch_printer(args):
    """With --no-progress, fit prints no line per epoch: this callback prints them instead."""
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
    """Run ``main(argv)``; a data, checkpoint or divergence problem ends with its one-line message
    (``error: ...``, exit status 1), not a traceback."""
    t0 = time.perf_counter()
    try:
        result = main(argv)
    except (DataError, TrainingDiverged, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"total time: {time.perf_counter() - t0:.1f} s")
    return result
