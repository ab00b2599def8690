"""Lesson 4 -- class balance: count the labels before training, and see what imbalance does.

1. The label counts of the MNIST training set (``minicnn.data.class_balance``): close to
   balanced, from '1' (the most common, ~11.2%) to '5' (the least, ~9.0%).
2. Two training sets of the same size drawn from MNIST: a balanced one (10% per class) and a
   deliberately imbalanced one where one class (``--majority``, default 3) makes up 60%. The same
   MLP trained on each, then per-class accuracy (recall) on the (balanced) test set: the
   imbalanced model favours the majority class -- its recall goes up, every other class pays,
   and many of the other digits are predicted as the majority class.

    python examples/lessons/l4_class_balance.py --data-dir DIR     # ~1 min on 2 CPU cores
"""

from __future__ import annotations

import _common as C
import numpy as np

import minicnn as mc
from minicnn import optim
from minicnn.data import class_balance


def draw(dataset, per_class, seed):
    """A subset with ``per_class[k]`` random images of class k (shuffled order)."""
    rng = np.random.default_rng(seed)
    idx = np.concatenate(
        [
            rng.choice(np.flatnonzero(dataset.targets == k), size=n, replace=False)
            for k, n in enumerate(per_class)
        ]
    )
    return dataset.subset(rng.permutation(idx))


def main(argv=None):
    def options(p):
        p.add_argument(
            "--majority", type=int, default=3, help="the class that makes up 60%% of the imbalanced set"
        )

    args = C.parse_args("l4_class_balance", __doc__.splitlines()[0], argv, options)
    C.start_report(args)
    full_train, test_full = C.load_mnist(args)
    measured = {}

    # ---------------------------------------------------------------- 1. the label counts
    bal = class_balance(full_train, verbose=False)
    pct = np.array(bal["percent"])
    top, low = int(pct.argmax()), int(pct.argmin())
    rows = [(c, f"{n:,}", f"{p:.2f}%") for c, n, p in zip(bal["classes"], bal["counts"], pct)]
    C.table(
        ["class", "training images", "share"],
        rows,
        title=f"MNIST training labels ({len(full_train):,} images)",
        out=args.out,
    )
    C.table(
        ["", "lesson's claim", "measured"],
        [
            ("most common class", "1 at ~11.2%", f"{bal['classes'][top]} at {pct[top]:.2f}%"),
            ("least common class", "5 at ~9.0%", f"{bal['classes'][low]} at {pct[low]:.2f}%"),
            ("largest / smallest", "-", f"{bal['ratio']:.3f}"),
        ],
        title="Balance",
        out=args.out,
    )
    measured["counts"], measured["most"], measured["least"] = bal["counts"], (top, pct[top]), (low, pct[low])

    # ---------------------------------------------------------------- 2. imbalanced training set
    n, major = C.pick(args, 5000, 100), args.majority
    n_major = int(0.6 * n)
    minor = (n - n_major) // 9
    sets = {
        "balanced": [n // 10] * 10,
        f"{major} = 60%": [n_major if k == major else minor for k in range(10)],
    }
    test_set = C.random_subset(test_full, C.pick(args, 2000, 100), args.seed + 1)
    epochs = C.pick(args, 5, 1)
    recalls, shares = {}, {}
    for label, per_class in sets.items():
        train_set = draw(full_train, per_class, args.seed)
        mc.manual_seed(args.seed)
        model = C.mlp()
        C.train(model, args, train_set, None, epochs, optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
        preds = C.predict(model, args, test_set.data)
        true = test_set.targets
        recalls[label] = np.array(
            [(preds[true == k] == k).mean() if (true == k).any() else np.nan for k in range(10)]
        )
        shares[label] = float((preds == major).mean())
        measured[label] = {
            "recall": recalls[label].tolist(),
            "accuracy": float((preds == true).mean()),
            "share_major": shares[label],
            "per_class_train": per_class,
        }
    share_test = float((test_set.targets == major).mean())
    rows = [(k, *(C.pct(recalls[lab][k]) for lab in sets)) for k in range(10)]
    rows.append(("all (accuracy)", *(C.pct(measured[lab]["accuracy"]) for lab in sets)))
    rows.append((f"test images predicted '{major}'", *(C.pct(shares[lab]) for lab in sets)))
    C.table(
        ["class: test recall", *(f"trained on {lab} ({n:,} images)" for lab in sets)],
        rows,
        title=f"Per-class accuracy, MLP, {epochs} epochs; '{major}' is {C.pct(share_test)} of the test set",
        out=args.out,
    )

    fig, (a, b) = C.figure(2, 1, size=(5.5, 4))
    a.bar(range(10), pct, color="tab:gray")
    a.axhline(10, color="k", lw=0.8, ls="--")
    a.set(
        xticks=range(10),
        xlabel="class",
        ylabel="% of training images",
        title="MNIST training labels",
        ylim=(8, 12),
    )
    for k, p in enumerate(pct):
        a.text(k, p + 0.05, f"{p:.1f}", ha="center", fontsize=8)
    width = 0.4
    for j, lab in enumerate(sets):
        b.bar(np.arange(10) + (j - 0.5) * width, 100 * recalls[lab], width, label=f"trained on {lab}")
    b.set(xticks=range(10), xlabel="class", ylabel="test recall (%)", title="per-class accuracy")
    b.legend(loc="lower left")
    for ax in (a, b):
        ax.grid(True, axis="y", alpha=0.3)
    C.save(fig, args, "class_balance.png")
    return measured


if __name__ == "__main__":
    C.run(main)
