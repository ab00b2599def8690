"""A small, readable training loop: ``fit`` and ``evaluate``, with progress bars and exact resume.

Usable on your own model in a few lines::

    import minicnn as mc
    from minicnn import nn, optim
    from minicnn.data import MNIST, DataLoader
    from minicnn.train import fit

    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    train = DataLoader(MNIST("./data", train=True), batch_size=64, shuffle=True, seed=0)
    test = DataLoader(MNIST("./data", train=False), batch_size=1000)
    history = fit(model, train, test, optim.Adam(model.parameters(), lr=1e-3), epochs=3)

What one epoch does: ``model.train()``; for each batch ``zero_grad -> forward -> loss ->
backward -> step``; then ``evaluate`` on the validation loader under ``no_grad`` in
``model.eval()`` mode; ``scheduler.step()`` (after every batch for ``OneCycleLR``, which is
defined per step, else once per epoch, as in PyTorch's examples; ``ReduceLROnPlateau`` is given
the validation loss, or the training loss without a validation loader); a checkpoint; the callbacks.

Running loss and accuracy are accumulated on the device (no ``.item()`` per batch, which would
make the CPU wait for the GPU); they are read back when the bar refreshes (about twice a
second) and at the end of the epoch.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from minicnn import serialization
from minicnn.autograd import no_grad
from minicnn.backend import is_cupy_array, to_numpy
from minicnn.nn import functional as F
from minicnn.optim.lr_scheduler import ReduceLROnPlateau

__all__ = [
    "fit",
    "evaluate",
    "predict",
    "confusion_matrix",
    "save_history",
    "TrainingDiverged",
    "CheckpointError",
    "CHECKPOINT_NAME",
]

CHECKPOINT_NAME = "checkpoint.safetensors"
_REFRESH_S = 0.5  # how often the bar's statistics are read back from the device


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; training was stopped."""


class CheckpointError(serialization.CheckpointError):
    """``fit(resume=True)`` found a checkpoint it cannot resume from (corrupt, or another model's):
    a :class:`minicnn.serialization.CheckpointError` whose message starts with "fit: cannot resume"."""


def _describe_loader(loader) -> str:
    """What makes a loader empty: its dataset size, batch size and drop_last, where it has them."""
    dataset = getattr(loader, "dataset", None)
    try:
        n = len(dataset) if dataset is not None else None
    except TypeError:
        n = None
    batch_size, drop_last = getattr(loader, "batch_size", None), getattr(loader, "drop_last", False)
    if n == 0:
        return "its dataset is empty"
    if n is not None and batch_size is not None and drop_last and n < batch_size:
        return (
            f"its dataset has {n} images, fewer than batch_size={batch_size}, and drop_last=True drops "
            "that incomplete batch: use a smaller batch_size or more images"
        )
    if n is not None:
        return f"its dataset has {n} images, batch_size={batch_size}, drop_last={drop_last}"
    return "it is empty"


def _empty_loader(who, what, loader) -> ValueError:
    return ValueError(f"{who}: the {what} loader yielded no batches ({_describe_loader(loader)})")


def _per_batch(scheduler) -> bool:
    """Schedulers defined per optimisation step (not per epoch)."""
    return type(scheduler).__name__ in ("OneCycleLR", "CyclicLR")


def _new_history() -> dict:
    keys = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s", "images_per_s")
    return {k: [] for k in keys}


def _diverged(value, epoch, batch, checkpoint) -> TrainingDiverged:
    where = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint was written"
    return TrainingDiverged(
        f"fit: the training loss became {value} at epoch {epoch}, batch {batch}; training stopped "
        f"({where}). Likely causes: a learning rate that is too high (try 10x smaller), inputs "
        "that are not normalised (scale pixels to [0, 1] and use Normalize(mean, std)), or a "
        "custom loss that takes log(0) or divides by 0."
    )


class _Running:
    """Loss sum and correct count kept as device arrays (no sync), read back on demand."""

    def __init__(self):
        self.loss_sum = 0.0
        self.correct = 0
        self.seen = 0

    def add(self, loss, logits, labels):
        n = labels.shape[0]
        self.loss_sum = self.loss_sum + loss.array.astype("float64") * n
        self.correct = self.correct + (logits.array.argmax(axis=1) == labels.array).sum()
        self.seen += n

    def read(self):
        """(mean loss, accuracy in [0, 1]) -- this is where the GPU is waited for."""
        if self.seen == 0:
            return float("nan"), float("nan")
        return float(self.loss_sum) / self.seen, int(self.correct) / self.seen


def _check_logits(out, labels, who):
    if out.ndim != 2 or out.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{who}: the model must return logits of shape (N, num_classes) = ({labels.shape[0]}, K) "
            f"for a batch of {labels.shape[0]} images, got shape {tuple(out.shape)}"
        )


def evaluate(model, loader, loss_fn=F.cross_entropy) -> dict:
    """Mean loss and accuracy of ``model`` over ``loader`` (eval mode, no graph): ``{"loss", "acc"}``.

    ``loss_fn(logits, labels)`` must return the batch *mean* (default ``F.cross_entropy``).
    """
    was_training = getattr(model, "training", False)
    model.eval()
    stats = _Running()
    try:
        with no_grad():
            for x, y in loader:
                out = model(x)
                _check_logits(out, y, "evaluate")
                stats.add(loss_fn(out, y), out, y)
    finally:
        model.train(was_training)
    if stats.seen == 0:
        raise _empty_loader("evaluate", "validation", loader)
    loss, acc = stats.read()
    return {"loss": loss, "acc": acc}


def predict(model, loader):
    """``(predicted classes, true labels)`` as NumPy int64 arrays over the whole loader (eval mode)."""
    was_training = getattr(model, "training", False)
    model.eval()
    preds, labels = [], []
    try:
        with no_grad():
            for x, y in loader:
                preds.append(model(x).array.argmax(axis=1))
                labels.append(y.array)
    finally:
        model.train(was_training)
    return np.concatenate([to_numpy(p) for p in preds]), np.concatenate([to_numpy(t) for t in labels])


def confusion_matrix(true, pred, num_classes) -> np.ndarray:
    """``cm[i, j]`` = number of images of class ``i`` predicted as class ``j``."""
    true, pred = np.asarray(true, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    return np.bincount(true * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def _train_epoch(model, loader, optimizer, loss_fn, scheduler, epoch, epochs, progress, checkpoint):
    from tqdm.auto import tqdm

    model.train()
    stats = _Running()
    step_each_batch = scheduler is not None and _per_batch(scheduler)
    bar = tqdm(
        total=len(loader), desc=f"epoch {epoch}/{epochs}", disable=not progress, leave=False, unit="batch"
    )
    start = last_read = time.perf_counter()
    try:
        for batch, (x, y) in enumerate(loader, start=1):
            optimizer.zero_grad()
            out = model(x)
            _check_logits(out, y, "fit")
            loss = loss_fn(out, y)
            # On the CPU reading the loss costs nothing: stop before a NaN reaches the weights.
            if not is_cupy_array(loss.array) and not math.isfinite(float(loss.array)):
                raise _diverged(float(loss.array), epoch, batch, checkpoint)
            loss.backward()
            optimizer.step()
            if step_each_batch:
                scheduler.step()
            stats.add(loss, out, y)
            now = time.perf_counter()
            if now - last_read >= _REFRESH_S:
                last_read = now
                mean_loss, acc = stats.read()  # GPU: the only sync point inside the epoch
                if not math.isfinite(mean_loss):
                    raise _diverged(mean_loss, epoch, batch, checkpoint)
                bar.set_postfix_str(
                    f"loss {mean_loss:.4f}, acc {100 * acc:.2f}%, {stats.seen / (now - start):.0f} img/s",
                    refresh=False,
                )
            bar.update(1)
    finally:
        bar.close()
    if _rank_and_world()[1] > 1:
        _sum_over_ranks(stats)
    if stats.seen == 0:
        raise _empty_loader("fit", "training", loader)
    mean_loss, acc = stats.read()
    if not math.isfinite(mean_loss):
        raise _diverged(mean_loss, epoch, len(loader), checkpoint)
    elapsed = time.perf_counter() - start
    return mean_loss, acc, elapsed, stats.seen / max(elapsed, 1e-9)


def _rank_and_world():
    """(rank, world size) of minicnn.distributed's process group; (0, 1) without one."""
    from minicnn import distributed as dist

    if not dist.is_initialized():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def _sum_over_ranks(stats):
    """Data-parallel training: the epoch's loss sum, correct count and images of all ranks (one
    all-reduce), so that every rank reports the statistics of the whole epoch."""
    from minicnn import distributed as dist
    from minicnn.creation import tensor
    from minicnn.dtypes import float64

    totals = tensor([float(stats.loss_sum), float(stats.correct), float(stats.seen)], dtype=float64)
    dist.all_reduce(totals)
    loss_sum, correct, seen = totals.numpy().tolist()
    stats.loss_sum, stats.correct, stats.seen = loss_sum, int(correct), int(seen)


def _current_lr(optimizer):
    return float(optimizer.param_groups[0]["lr"])


def fit(
    model,
    train_loader,
    val_loader,
    optimizer,
    epochs,
    loss_fn=F.cross_entropy,
    scheduler=None,
    callbacks=(),
    checkpoint_dir=None,
    resume=False,
    progress=True,
) -> dict:
    """Train ``model`` for ``epochs`` epochs; return the history of per-epoch metrics.

    * ``loss_fn(logits, labels)`` returns the batch mean.
    * ``val_loader`` may be None (no validation columns).
    * ``callbacks``: callables ``cb(epoch, history)`` run after each epoch; one returning True
      stops training (e.g. early stopping).
    * ``checkpoint_dir``: after each epoch, ``checkpoint.safetensors`` there holds the model,
      optimizer, scheduler, epoch, history, the training loader's shuffling RNG and minicnn's RNG
      (dropout). ``resume=True`` restores it and continues; on the CPU the result is bit for
      bit that of an uninterrupted run. A checkpoint that cannot be loaded (damaged, or saved
      for another model or optimizer) raises :class:`CheckpointError`. Whether training resumed
      or started from scratch is printed in one line, with or without ``progress``.
    * ``progress``: a tqdm bar per epoch (running loss, accuracy, images/s) and one summary
      line per epoch.
    * Data-parallel (``minicnn.distributed`` initialised, the model in DistributedDataParallel):
      each epoch calls the training sampler's ``set_epoch(epoch)`` (DistributedSampler); the
      training loss, accuracy and images/s are those of all ranks together (one all-reduce per
      epoch); only rank 0 shows progress and writes the checkpoint, which every rank resumes from.

    History keys: ``epoch, train_loss, train_acc, val_loss, val_acc, lr, epoch_time_s,
    images_per_s`` (accuracies in [0, 1], ``lr`` at the start of each epoch).
    A NaN or infinite loss raises :class:`TrainingDiverged` with the likely causes; a loader that
    yields no batches raises ValueError (with its dataset size, batch size and ``drop_last``).
    """
    from tqdm.auto import tqdm

    from minicnn.serialization import load_training_state, save_training_state

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"fit: epochs must be a non-negative integer, got {epochs!r}")
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if resume and checkpoint is None:
        raise ValueError("fit: resume=True needs checkpoint_dir (the folder of checkpoint.safetensors)")
    history, first_epoch = _new_history(), 1
    rank, _ = _rank_and_world()  # data-parallel: every rank trains, rank 0 alone prints and saves
    progress = progress and rank == 0
    say = tqdm.write if progress else print  # whether training resumed is said even without progress bars
    if rank != 0:
        say = _silent
    if resume and checkpoint.is_file():
        try:
            state = load_training_state(checkpoint, model, optimizer, scheduler)
            history = state["extra"]["history"]
            if hasattr(train_loader, "load_state_dict"):
                train_loader.load_state_dict(state["extra"]["train_loader"])
            first_epoch = int(state["epoch"]) + 1
        except Exception as e:  # a damaged file, or the checkpoint of another model/optimizer/loader
            raise CheckpointError(
                f"fit: cannot resume from {checkpoint}: {e} (delete the file, or choose another folder, "
                "to start from scratch)"
            ) from e
        say(f"resumed from {checkpoint} after epoch {state['epoch']}")
    elif resume:
        say(f"no checkpoint at {checkpoint} yet: starting from scratch")
    if checkpoint is not None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)

    sampler = getattr(train_loader, "sampler", None)
    for epoch in range(first_epoch, epochs + 1):
        if hasattr(sampler, "set_epoch"):  # DistributedSampler: this epoch's order, the same on every rank
            sampler.set_epoch(epoch)
        lr = _current_lr(optimizer)
        good = checkpoint if checkpoint is not None and checkpoint.is_file() else None
        train_loss, train_acc, seconds, speed = _train_epoch(
            model, train_loader, optimizer, loss_fn, scheduler, epoch, epochs, progress, good
        )
        val = evaluate(model, val_loader, loss_fn) if val_loader is not None else {"loss": None, "acc": None}
        if isinstance(scheduler, ReduceLROnPlateau):  # watches the validation loss (else the training loss)
            scheduler.step(val["loss"] if val_loader is not None else train_loss)
        elif scheduler is not None and not _per_batch(scheduler):
            scheduler.step()
        row = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val["loss"],
               "val_acc": val["acc"], "lr": lr, "epoch_time_s": seconds, "images_per_s": speed}  # fmt: skip
        for key, value in row.items():
            history[key].append(value)
        if progress:
            tqdm.write(_summary(row, epochs))
        if checkpoint is not None and rank == 0:
            extra = {"history": history}
            if hasattr(train_loader, "state_dict"):
                extra["train_loader"] = train_loader.state_dict()
            save_training_state(checkpoint, model, optimizer, scheduler, epoch=epoch, extra=extra)
        if any(cb(epoch, history) is True for cb in callbacks):
            if progress:
                tqdm.write(f"a callback stopped training after epoch {epoch}")
            break
    return history


def _silent(*args, **kwargs):
    pass


def format_epoch(history, index, epochs) -> str:
    """One line for epoch ``history[...][index]``: losses, accuracies, lr, time and speed."""
    return _summary({k: v[index] for k, v in history.items()}, epochs)


def _summary(row, epochs) -> str:
    text = (
        f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.4f} acc {100 * row['train_acc']:.2f}%"
    )
    if row["val_loss"] is not None:
        text += f" | val loss {row['val_loss']:.4f} acc {100 * row['val_acc']:.2f}%"
    return text + f" | lr {row['lr']:.3g} | {row['epoch_time_s']:.1f} s, {row['images_per_s']:.0f} img/s"


def save_history(history, out_dir) -> tuple[Path, Path]:
    """Write ``history.json`` and ``history.csv`` (one row per epoch) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "history.json").write_text(json.dumps(history, indent=2))
    keys = list(history)
    rows = [",".join(keys)]
    for i in range(len(history["epoch"])):
        rows.append(",".join("" if history[k][i] is None else repr(history[k][i]) for k in keys))
    (out / "history.csv").write_text("\n".join(rows) + "\n")
    return out / "history.json", out / "history.csv"
