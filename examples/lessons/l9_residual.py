"""Lesson 9 -- residual connections: identity shortcuts keep a deep network trainable.

Two networks with the same 20 weight layers (a stride-2 stem conv, 18 3x3 convs in 9 blocks of
two, a linear classifier on the flattened 8 x 7 x 7 features) and the same initialisation
(PyTorch's defaults), no BatchNorm, on MNIST:

* **plain**: ``x = relu(conv2(relu(conv1(x))))`` for each block;
* **residual**: ``x = relu(x + conv2(relu(conv1(x))))`` -- the identity shortcut of He et al. (2016).

At initialisation the script back-propagates one batch and prints the gradient norm of every
layer's weights: in the plain network the signal shrinks at every layer on the way forward and
again on the way back, so the first layers get almost no gradient; with shortcuts the gradient
reaches every layer. Then both train with the same SGD settings (lr 0.02, momentum 0.9).

    python examples/lessons/l9_residual.py --data-dir DIR     # ~3-5 min on 2 CPU cores
"""

from __future__ import annotations

import _common as C
import numpy as np

import minicnn as mc
from minicnn import nn, optim
from minicnn.nn import functional as F


class DeepCNN(nn.Module):
    """Stem conv (stride 2), max-pool, ``blocks`` x [conv, ReLU, conv, (+ x), ReLU], flatten, Linear."""

    def __init__(self, blocks=9, width=8, residual=False, num_classes=10):
        super().__init__()
        self.residual = residual
        self.stem = nn.Conv2d(1, width, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.convs = nn.ModuleList([nn.Conv2d(width, width, 3, padding=1) for _ in range(2 * blocks)])
        self.fc = nn.Linear(width * 7 * 7, num_classes)  # 28x28 input: 7x7 after the stem and the pool

    def forward(self, x):
        x = self.pool(F.relu(self.stem(x)))
        for i in range(0, len(self.convs), 2):
            out = self.convs[i + 1](F.relu(self.convs[i](x)))
            x = F.relu(x + out) if self.residual else F.relu(out)
        return self.fc(x.flatten(1))


def weight_layers(model):
    """(name, weight Parameter) of the 20 weight layers, input side first."""
    return [(name, p) for name, p in model.named_parameters() if name.endswith("weight")]


def gradient_norms(model, images, labels):
    """L2 norm of dLoss/dW for each weight layer, for one batch at the current weights."""
    model.zero_grad()
    F.cross_entropy(model(images), labels).backward()
    norms = [float(np.linalg.norm(p.grad.numpy())) for _, p in weight_layers(model)]
    model.zero_grad()
    return norms


def main(argv=None):
    args = C.parse_args("l9_residual", __doc__.splitlines()[0], argv)
    C.start_report(args)
    n_train, n_test, epochs = C.pick(args, 2000, 128), C.pick(args, 1000, 50), C.pick(args, 2, 1)
    blocks, width = C.pick(args, 9, 2), 8
    train_set, test_set = C.load_mnist(args, n_train, n_test)
    probe_x, probe_y = (
        C.as_batch(args, train_set.data[:64]),
        mc.tensor(train_set.targets[:64], device=args.device),
    )

    nets, norms, runs, measured = {}, {}, {}, {}
    for name, residual in (("plain", False), ("residual", True)):
        mc.manual_seed(args.seed)  # the same initial weights for both
        nets[name] = DeepCNN(blocks, width, residual).to(args.device)
        norms[name] = gradient_norms(nets[name], probe_x, probe_y)
    names = [n for n, _ in weight_layers(nets["plain"])]
    n_layers = len(names)
    rows = [
        (i + 1, names[i], f"{norms['plain'][i]:.2e}", f"{norms['residual'][i]:.2e}") for i in range(n_layers)
    ]
    C.table(
        ["layer", "weights", "plain: norm of dL/dW", "residual: norm of dL/dW"],
        rows,
        title=f"Gradient norm per layer at initialisation (one batch of 64, {n_layers} weight layers)",
        out=args.out,
    )

    for name, model in nets.items():
        opt = optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
        loader = C.loader(args, train_set, 64, shuffle=True)
        res = C.train_steps(model, opt, C.epochs_of(loader, epochs))
        runs[name] = res
        acc = C.accuracy(model, args, test_set.data, test_set.targets)
        last = res["loss"][-len(loader) :]
        measured[name] = {
            "grad_norms": norms[name],
            "test_acc": acc,
            "final_loss": float(np.mean(last)),
            "diverged_at": res["diverged_at"],
        }
    ratio = {n: norms[n][0] / norms[n][-1] for n in nets}
    C.table(
        ["", "lesson's claim", "plain", "residual"],
        [
            (
                "norm of dL/dW: first layer / last layer",
                "plain << residual",
                f"{ratio['plain']:.1e}",
                f"{ratio['residual']:.1e}",
            ),
            (
                f"training loss, last epoch (of {epochs})",
                "plain stalls",
                f"{measured['plain']['final_loss']:.3f}",
                f"{measured['residual']['final_loss']:.3f}",
            ),
            (
                "test accuracy",
                "residual trains",
                C.pct(measured["plain"]["test_acc"]),
                C.pct(measured["residual"]["test_acc"]),
            ),
        ],
        title=f"Plain vs residual, SGD lr 0.02 momentum 0.9, {len(train_set):,} images, {epochs} epochs",
        out=args.out,
    )

    fig, (a, b) = C.figure(2, 1, size=(5.5, 4))
    for name in nets:
        a.semilogy(range(1, n_layers + 1), norms[name], "o-", label=name, ms=4)
    a.set(
        xlabel="weight layer (1 = input side)",
        ylabel="norm of dL/dW (log)",
        title="gradient norms at initialisation",
        xticks=range(1, n_layers + 1, 2),
    )
    a.legend()
    for name, res in runs.items():
        loss = np.array(res["loss"])
        k = max(1, len(loss) // 50)  # a running mean over k steps keeps the curve readable
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        b.plot(np.arange(k, len(loss) + 1), smooth, label=name)
    b.axhline(np.log(10), color="k", lw=0.8, ls="--", label="chance (ln 10)")
    b.set(xlabel="step", ylabel="training loss", title=f"training ({n_layers} weight layers, no BatchNorm)")
    b.legend()
    for ax in (a, b):
        ax.grid(True, alpha=0.3)
    C.save(fig, args, "residual.png")
    return measured


if __name__ == "__main__":
    C.run(main)
