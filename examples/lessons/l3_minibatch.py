"""Lesson 3 -- minibatches, shuffling and the learning rate.

Three experiments with the same small MLP (784-128-10, plain SGD) on an MNIST subset:

1. **Full batch vs minibatch, same budget of epochs** (= the same number of per-image gradient
   evaluations): full-batch gradient descent takes one step per epoch, minibatch SGD (64 images)
   takes N/64 noisier steps per epoch and gets much further.
2. **Shuffling**: the training set sorted by label and NOT shuffled: each stretch of batches holds
   one class, the network learns "everything is the current class", and after the epoch it
   predicts mostly the last class it saw (9). The same data shuffled trains normally.
3. **Learning-rate sweep**: one epoch for each rate; too small crawls, too large diverges -- the
   loss becomes infinite/NaN, which is caught (the run stops) instead of crashing.

    python examples/lessons/l3_minibatch.py --data-dir DIR     # ~1 min on 2 CPU cores
"""

from __future__ import annotations

import math

import _common as C
import numpy as np

import minicnn as mc
from minicnn import optim
from minicnn.data import ArraysDataset


def main(argv=None):
    args = C.parse_args("l3_minibatch", __doc__.splitlines()[0], argv)
    C.start_report(args)
    n_train, n_test, epochs = C.pick(args, 5000, 300), C.pick(args, 1000, 100), C.pick(args, 10, 2)
    train_set, test_set = C.load_mnist(args, n_train, n_test)
    lr = 0.1
    measured = {}

    # ---------------------------------------------------------------- 1. full batch vs minibatch
    curves = {}
    rows = []
    for label, batch in (("full batch", len(train_set)), ("minibatch 64", 64)):
        mc.manual_seed(args.seed)
        model = C.mlp()
        hist = C.train(model, args, train_set, test_set, epochs, optim.SGD(model.parameters(), lr=lr), batch)
        steps = epochs * math.ceil(len(train_set) / batch)
        curves[label] = hist
        measured[label] = {
            "steps": steps,
            "test_acc": hist["val_acc"][-1],
            "train_loss": hist["train_loss"][-1],
        }
        rows.append((label, batch, steps, f"{hist['train_loss'][-1]:.3f}", C.pct(hist["val_acc"][-1])))
    C.table(
        ["method", "batch size", f"steps in {epochs} epochs", "last epoch's train loss", "test accuracy"],
        rows,
        title=f"Same budget: {epochs} epochs = {epochs * len(train_set):,} per-image gradients, SGD lr {lr}",
        out=args.out,
    )

    # ---------------------------------------------------------------- 2. sorted without shuffling
    order = np.argsort(train_set.targets, kind="stable")
    sorted_set = ArraysDataset(
        train_set.data[order], train_set.targets[order], train_set.classes, "MNIST sorted"
    )
    runs = {}
    rows = []
    last = int(sorted_set.targets[-1])
    for label, ds, shuffle in (
        ("sorted by label, no shuffle", sorted_set, False),
        ("shuffled", train_set, True),
    ):
        mc.manual_seed(args.seed)
        model = C.mlp()
        res = C.train_steps(
            model, optim.SGD(model.parameters(), lr=lr), C.loader(args, ds, 64, shuffle=shuffle)
        )
        preds = C.predict(model, args, test_set.data)
        acc = float((preds == test_set.targets).mean())
        share_last = float((preds == last).mean())
        runs[label] = (res["loss"], np.bincount(preds, minlength=10) / len(preds))
        measured[label] = {"test_acc": acc, "share_last": share_last}
        rows.append((label, C.pct(acc), C.pct(share_last), C.pct(float((test_set.targets == last).mean()))))
    C.table(
        [
            "training order (1 epoch)",
            "test accuracy",
            f"test images predicted '{last}'",
            f"true share of '{last}'",
        ],
        rows,
        title="Shuffling",
        out=args.out,
    )

    # ---------------------------------------------------------------- 3. learning-rate sweep
    sweep = {}
    rows = []
    for rate in C.pick(args, (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0), (0.1, 10000.0)):
        mc.manual_seed(args.seed)
        model = C.mlp()
        res = C.train_steps(
            model, optim.SGD(model.parameters(), lr=rate), C.loader(args, train_set, 64, True)
        )
        sweep[rate] = res
        if res["diverged_at"] is not None:
            acc, verdict = None, f"diverged: loss {res['loss'][-1]} at step {res['diverged_at']}"
        else:
            acc = C.accuracy(model, args, test_set.data, test_set.targets)
            peak = max(res["loss"])
            if acc > 0.5:
                verdict = "trains"
            elif peak > 2 * res["loss"][0]:
                verdict = f"unstable: loss jumped to {peak:.3g}, accuracy near chance"
            else:
                verdict = "too slow: loss still near ln 10 = 2.30"
        measured[f"lr={rate}"] = {
            "test_acc": acc,
            "diverged_at": res["diverged_at"],
            "final_loss": res["loss"][-1],
        }
        rows.append((rate, f"{res['loss'][-1]:.3f}", "-" if acc is None else C.pct(acc), verdict))
    C.table(
        ["learning rate", "last loss", "test accuracy", "verdict"],
        rows,
        title="Learning-rate sweep: 1 epoch of minibatch SGD (64)",
        out=args.out,
    )

    # ---------------------------------------------------------------- figure
    fig, (a, b, c, d) = C.figure(2, 2, size=(5.5, 4))
    for label, hist in curves.items():
        a.plot(hist["epoch"], [100 * v for v in hist["val_acc"]], "o-", label=label)
    a.set(
        xlabel="epoch (same number of gradient evaluations)",
        ylabel="test accuracy (%)",
        title="full batch vs minibatch, SGD lr 0.1",
    )
    a.legend()
    for label, (loss, _) in runs.items():
        b.plot(range(1, len(loss) + 1), loss, label=label, lw=1)
    b.set(xlabel="step", ylabel="training loss (batch)", title="one epoch: sorted vs shuffled")
    b.legend()
    width = 0.4
    for k, (label, (_, share)) in enumerate(runs.items()):
        c.bar(np.arange(10) + (k - 0.5) * width, 100 * share, width, label=label)
    c.set(
        xlabel="predicted class",
        ylabel="% of test predictions",
        title="what the network predicts afterwards",
        xticks=range(10),
    )
    c.legend()
    for rate, res in sweep.items():
        loss = np.array(res["loss"], dtype=float)
        steps = np.arange(1, len(loss) + 1)
        (line,) = d.plot(steps, np.where(np.isfinite(loss), loss, np.nan), label=f"lr {rate}", lw=1)
        if res["diverged_at"] is not None:
            finite = np.flatnonzero(np.isfinite(loss))
            y = loss[finite[-1]] if finite.size else 1.0
            d.plot(res["diverged_at"], y, "x", color=line.get_color(), ms=10, mew=2)
    d.set(
        yscale="log", xlabel="step", ylabel="training loss (log)", title="learning-rate sweep (x = NaN/inf)"
    )
    d.legend(fontsize=8)
    for ax in (a, b, c, d):
        ax.grid(True, alpha=0.3)
    C.save(fig, args, "minibatch.png")
    return measured


if __name__ == "__main__":
    C.run(main)
