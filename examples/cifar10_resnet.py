"""Train a small CIFAR ResNet (ResNet-20 by default) on CIFAR-10: the best accuracy per minute on a GPU.

    python examples/cifar10_resnet.py --device cuda                 # ./data, as in cifar10_cnn.py
    python examples/cifar10_resnet.py --depth 32 --width 16 --epochs 40

Same data pipeline as cifar10_cnn.py (crop + flip + normalise, on the device). The network is
minicnn.models.resnet (BasicBlocks with BatchNorm, global average pooling, no dropout); SGD
with Nesterov momentum 0.9, weight decay 5e-4 and a one-cycle learning rate, with large
batches (256) so that the GPU stays busy.
"""

from __future__ import annotations

import argparse

from cifar10_cnn import cifar10_data, fit_one_cycle
from common import (
    parse_args,
    pick_device,
    positive_int,
    process_seed,
    run,
    setup_distributed,
    unwrap,
    wrap_model,
    write_report,
)

import minicnn as mc
from minicnn.models import resnet


def main(argv=None):
    args = parse_args(argv, __doc__.splitlines()[0], epochs=20, batch_size=256, lr=0.1,
                      out="runs/cifar10_resnet", add_arguments=_resnet_arguments)  # fmt: skip
    device = pick_device(args.device)
    setup_distributed(args)
    mc.manual_seed(process_seed(args))
    train_set, test_set, train_loader, test_loader = cifar10_data(args, device, test_batch_size=1000)
    model = wrap_model(resnet(args.depth, width=args.width).to(device), args)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"ResNet-{args.depth}, width {args.width}: {n_params:,} parameters")
    history = fit_one_cycle(model, args, train_loader, test_loader)
    if args.rank == 0:  # one process writes the report
        title = f"CIFAR-10 ResNet-{args.depth}"
        return write_report(unwrap(model), history, test_set, test_loader, args.out, title)


def _depth(text):
    depth = positive_int(text)
    if depth < 8 or (depth - 2) % 6 != 0:
        raise argparse.ArgumentTypeError(f"must be 6n + 2 (8, 14, 20, 32, 44, 56, ...), got {depth}")
    return depth


def _resnet_arguments(parser):
    parser.add_argument("--depth", type=_depth, default=20, help="6n + 2: 20, 32, 44, 56")
    parser.add_argument("--width", type=positive_int, default=16, help="channels of the first stage")


if __name__ == "__main__":
    run(main)
