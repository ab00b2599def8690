"""Lesson 6 -- batch norm: train mode and eval mode compute different functions.

In train mode ``BatchNorm2d`` normalises each channel with the mean and variance of the CURRENT
batch (and updates its running averages); in eval mode it uses the running averages. A network
left in train mode at test time therefore gives answers that depend on which other images share
the batch -- visibly so for a small batch. ``model.eval()`` fixes it.

Experiments, with a small CNN (conv 8 - BN - ReLU - pool - conv 16 - BN - ReLU - pool - Linear)
on an MNIST subset:

1. train/eval predictions on one test batch of 8 images, and on a batch of 8 images of one class;
   test accuracy computed in batches of 8 in train mode vs eval mode;
2. the running statistics converging toward the data statistics: reset them, feed training
   batches in train mode (no weight updates) and compare with the true per-channel mean and
   variance of the first conv layer's output; the error should shrink like (1 - momentum)^t;
3. training with and without BatchNorm at three learning rates (loss curves).

    python examples/lessons/l6_batchnorm.py --data-dir DIR     # ~2-3 min on 2 CPU cores
"""

from __future__ import annotations

from contextlib import contextmanager

import _common as C
import numpy as np

import minicnn as mc
from minicnn import nn, optim


def small_cnn(batchnorm=True):
    norm = nn.BatchNorm2d if batchnorm else (lambda c: nn.Identity())
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        norm(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        norm(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 7 * 7, 10),
    )


def batchnorms(model):
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


@contextmanager
def train_mode_without_updates(model):
    """Train mode (batch statistics) with momentum 0, so the running statistics are left untouched."""
    saved = [(bn, bn.momentum) for bn in batchnorms(model)]
    model.train()
    for bn, _ in saved:
        bn.momentum = 0.0
    try:
        yield model
    finally:
        for bn, momentum in saved:
            bn.momentum = momentum
        model.eval()


def probabilities(model, x):
    with mc.no_grad():
        logits = model(x).numpy().astype(np.float64)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def accuracy_in_batches(model, args, images, labels, batch, train_mode):
    preds = []
    for i in range(0, len(images), batch):
        x = C.as_batch(args, images[i : i + batch])
        if train_mode:
            with train_mode_without_updates(model):
                preds.append(probabilities(model, x).argmax(axis=1))
        else:
            model.eval()
            preds.append(probabilities(model, x).argmax(axis=1))
    return float((np.concatenate(preds) == labels).mean())


def main(argv=None):
    args = C.parse_args("l6_batchnorm", __doc__.splitlines()[0], argv)
    C.start_report(args)
    n_train, n_test, epochs = C.pick(args, 3000, 128), C.pick(args, 1000, 40), C.pick(args, 2, 1)
    train_set, test_set = C.load_mnist(args, n_train, n_test)
    measured = {}

    # ---------------------------------------------------------------- 3. (first) train with/without BN
    lrs = C.pick(args, (0.05, 0.2, 0.5), (0.05,))
    curves, models, rows = {}, {}, []
    for lr in lrs:
        for bn in (True, False):
            mc.manual_seed(args.seed)
            model = small_cnn(bn).to(args.device)
            loader = C.loader(args, train_set, 64, shuffle=True)
            res = C.train_steps(model, optim.SGD(model.parameters(), lr=lr), C.epochs_of(loader, epochs))
            acc = (
                C.accuracy(model, args, test_set.data, test_set.targets)
                if res["diverged_at"] is None
                else None
            )
            key = f"{'BN' if bn else 'no BN'}, lr {lr}"
            curves[key], models[key] = res["loss"], model
            last = float(np.mean(res["loss"][-len(loader) :]))
            measured[key] = {"test_acc": acc, "last_epoch_loss": last, "diverged_at": res["diverged_at"]}
            rows.append((lr, "yes" if bn else "no", f"{last:.3f}", "diverged" if acc is None else C.pct(acc)))
    C.table(
        ["SGD lr", "BatchNorm", "train loss (last epoch)", "test accuracy"],
        rows,
        title=f"Training with and without BatchNorm ({len(train_set):,} images, {epochs} epochs, batch 64)",
        out=args.out,
    )

    # ---------------------------------------------------------------- 1. train vs eval mode
    model = models[f"BN, lr {lrs[0]}"].eval()
    x8, y8 = C.as_batch(args, test_set.data[:8]), test_set.targets[:8]
    p_eval = probabilities(model, x8)
    with train_mode_without_updates(model):
        p_train = probabilities(model, x8)
    one_class = test_set.data[test_set.targets == 1][:8]
    xs = C.as_batch(args, one_class)
    p_eval_1 = probabilities(model, xs)
    with train_mode_without_updates(model):
        p_train_1 = probabilities(model, xs)
    rows = [
        (
            "8 test images",
            "".join(map(str, y8)),
            "".join(map(str, p_eval.argmax(1))),
            "".join(map(str, p_train.argmax(1))),
            f"{np.abs(p_eval - p_train).max():.3f}",
        ),
        (
            f"{len(one_class)} images of '1'",
            "1" * len(one_class),
            "".join(map(str, p_eval_1.argmax(1))),
            "".join(map(str, p_train_1.argmax(1))),
            f"{np.abs(p_eval_1 - p_train_1).max():.3f}",
        ),
    ]
    C.table(
        [
            "batch",
            "true labels",
            "eval() predictions",
            "train-mode predictions",
            "largest probability change",
        ],
        rows,
        title="One batch, the same trained weights, two modes",
        out=args.out,
    )
    acc_rows = []
    for label, batch, train_mode in (
        ("eval(), batches of 500", 500, False),
        ("eval(), batches of 8", 8, False),
        ("train mode, batches of 8", 8, True),
        ("train mode, batches of 500", 500, True),
    ):
        a = accuracy_in_batches(model, args, test_set.data, test_set.targets, batch, train_mode)
        measured[label] = a
        acc_rows.append((label, C.pct(a)))
    C.table(["test accuracy computed in", "accuracy"], acc_rows, title="Test accuracy by mode", out=args.out)
    measured["batch8"] = {"eval": p_eval.argmax(1).tolist(), "train": p_train.argmax(1).tolist()}

    # ---------------------------------------------------------------- 2. running statistics
    bn1, conv1 = batchnorms(model)[0], model[0]
    with mc.no_grad():  # the data statistics of the first BN's input: conv1 output over the training subset
        sums, sq, count = 0.0, 0.0, 0
        for i in range(0, len(train_set), 500):
            h = conv1(C.as_batch(args, train_set.data[i : i + 500])).numpy().astype(np.float64)
            sums, sq, count = (
                sums + h.sum(axis=(0, 2, 3)),
                sq + (h**2).sum(axis=(0, 2, 3)),
                count + h[:, 0].size,
            )
    true_mean = sums / count
    true_var = sq / count - true_mean**2
    bn1.reset_running_stats()
    steps = C.pick(args, 60, 5)
    err_mean, err_var = [], []
    model.train()
    loader = C.loader(args, train_set, 64, shuffle=True)
    with mc.no_grad():
        for step, (x, _) in enumerate(C.epochs_of(loader, 100), start=1):
            model(x)  # train mode: normalise with batch statistics, update the running averages
            err_mean.append(float(np.abs(bn1.running_mean.numpy() - true_mean).mean()))
            err_var.append(float(np.abs(bn1.running_var.numpy() - true_var).mean() / true_var.mean()))
            if step == steps:
                break
    model.eval()
    predicted = [err_mean[0] / 0.9 * 0.9**t for t in range(1, steps + 1)]  # started from running_mean = 0
    rows = [
        (t, f"{err_mean[t - 1]:.4f}", f"{predicted[t - 1]:.4f}", f"{err_var[t - 1]:.3f}")
        for t in (1, 5, 10, 20, 40, 60)
        if t <= steps
    ]
    C.table(
        [
            "steps",
            "mean abs(running_mean - data mean)",
            "(1 - 0.1)^t prediction",
            "relative abs(running_var - data var)",
        ],
        rows,
        title=f"Running statistics of the first BatchNorm (8 channels) from reset, momentum {bn1.momentum}",
        out=args.out,
    )
    measured["running_mean_error"], measured["running_var_error"] = err_mean, err_var

    # ---------------------------------------------------------------- figure
    fig, (a, b, c) = C.figure(3, 1, size=(4.8, 4))
    for key, loss in curves.items():
        k = max(1, len(loss) // 40)
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        a.plot(np.arange(k, len(loss) + 1), smooth, label=key, ls="-" if key.startswith("BN") else "--")
    a.set(xlabel="step", ylabel="training loss", title="with vs without BatchNorm", ylim=(0, 2.6))
    a.legend(fontsize=8)
    t = np.arange(1, steps + 1)
    b.semilogy(t, err_mean, "o-", ms=3, label="abs(running_mean - data mean)")
    b.semilogy(t, predicted, "k--", label="0.9^t")
    b.semilogy(t, err_var, "s-", ms=3, label="relative var error")
    b.set(xlabel="train-mode forward passes", ylabel="error (log)", title="running statistics after a reset")
    b.legend(fontsize=8)
    c.bar(np.arange(10) - 0.2, p_eval[0], 0.4, label="eval()")
    c.bar(np.arange(10) + 0.2, p_train[0], 0.4, label="train mode")
    c.set(
        xticks=range(10),
        xlabel="class",
        ylabel="probability",
        title=f"test image 0 (a '{y8[0]}') in a batch of 8",
    )
    c.legend(fontsize=8)
    for ax in (a, b, c):
        ax.grid(True, alpha=0.3)
    C.save(fig, args, "batchnorm.png")
    return measured


if __name__ == "__main__":
    C.run(main)
