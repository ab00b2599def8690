"""Train a small CIFAR ResNet (ResNet-20 by default) on CIFAR-10: the best accuracy per minute on a GPU.

    python examples/cifar10_resnet.py --device cuda                 # ./data, as in cifar10_cnn.py
    python examples/cifar10_resnet.py --depth 32 --width 16 --epochs 40

Same data pipeline as cifar10_cnn.py (crop + flip + normalise, on the device). The network is
minicnn.models.resnet (BasicBlocks with BatchNorm, global average pooling, no dropout); SGD
with Nesterov momentum 0.9, weight decay 5e-4 and a one-cycle learning rate, with large
batches (256) so that the GPU stays busy.
"""

from __future__ import annotations

from common import epoch_printer, limit, parse_args, pick_device, run, write_report

import minicnn as mc
from minicnn import optim
from minicnn.data import (
    CIFAR10,
    Compose,
    DataLoader,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    sample_grid,
)
from minicnn.models import resnet
from minicnn.train import fit

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def main(argv=None):
    args = parse_args(argv, __doc__.splitlines()[0], epochs=20, batch_size=256, lr=0.1,
                      out="runs/cifar10_resnet", add_arguments=_resnet_arguments)  # fmt: skip
    device = pick_device(args.device)
    mc.manual_seed(args.seed)

    train_set = limit(CIFAR10(args.data_dir, train=True, download=True), args.limit_train)
    test_set = limit(CIFAR10(args.data_dir, train=False, download=True), args.limit_test)
    print(f"train: {train_set}\ntest:  {test_set}\ndevice: {device}")
    sample_grid(train_set, n=25, path=f"{args.out}/samples.png", title="CIFAR-10: training samples")

    normalize = Normalize(CIFAR_MEAN, CIFAR_STD)
    augment = Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), normalize])
    train_loader = DataLoader(train_set, args.batch_size, shuffle=True, drop_last=True, device=device,
                              transform=augment, seed=args.seed)  # fmt: skip
    test_loader = DataLoader(test_set, 1000, device=device, transform=normalize)

    model = resnet(args.depth, width=args.width).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"ResNet-{args.depth}, width {args.width}: {n_params:,} parameters")
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scheduler = optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, epochs=args.epochs,
                                              steps_per_epoch=len(train_loader))  # fmt: skip
    history = fit(model, train_loader, test_loader, optimizer, args.epochs, scheduler=scheduler,
                  callbacks=epoch_printer(args), checkpoint_dir=args.out, resume=args.resume,
                  progress=not args.no_progress)  # fmt: skip
    return write_report(model, history, test_set, test_loader, args.out, f"CIFAR-10 ResNet-{args.depth}")


def _resnet_arguments(parser):
    parser.add_argument("--depth", type=int, default=20, help="6n + 2: 20, 32, 44, 56")
    parser.add_argument("--width", type=int, default=16, help="channels of the first stage")


if __name__ == "__main__":
    run(main)
