"""Train a three-block CNN (BatchNorm + Dropout 0.5) on CIFAR-10 with augmentation and one-cycle SGD.

    python examples/cifar10_cnn.py     # ./data: cifar-10-batches-py/ or cifar10/cifar10_uint8.npz
    python examples/cifar10_cnn.py --data-dir /path/to/cifar10_uint8.npz --epochs 2 --limit-train 5000
    python -m minicnn.distributed.run --nproc-per-node 2 examples/cifar10_cnn.py --sync-bn

Augmentation on the device, per batch: random crop 32 with 4 pixels of zero padding, random
horizontal flip, per-channel normalisation. SGD with Nesterov momentum 0.9 and weight decay
5e-4, learning rate following OneCycleLR (warm-up to --lr, then cosine annealing), stepped
after every batch.
"""

from __future__ import annotations

from common import (
    epoch_printer,
    limit,
    parse_args,
    pick_device,
    process_seed,
    require_batches,
    run,
    setup_distributed,
    train_loader,
    unwrap,
    wrap_model,
    write_report,
)

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
from minicnn.models import cifar_cnn
from minicnn.train import fit

# Per-channel mean and std of the CIFAR-10 training images (0-1 scale; minicnn.data.channel_stats).
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def main(argv=None):
    args = parse_args(
        argv, __doc__.splitlines()[0], epochs=30, batch_size=128, lr=0.05, out="runs/cifar10_cnn"
    )
    device = pick_device(args.device)
    setup_distributed(args)
    mc.manual_seed(process_seed(args))
    train_set, test_set, train, test_loader = cifar10_data(args, device, test_batch_size=500)
    model = wrap_model(cifar_cnn().to(device), args)
    print(model)
    history = fit_one_cycle(model, args, train, test_loader)
    if args.rank == 0:  # one process writes the report
        return write_report(unwrap(model), history, test_set, test_loader, args.out, "CIFAR-10 CNN")


def cifar10_data(args, device, test_batch_size):
    """The CIFAR-10 sets and loaders (also used by cifar10_resnet.py): training batches are
    augmented on the device (random crop 32 with 4 pixels of padding, horizontal flip) and
    normalised, test batches only normalised. Saves a grid of training samples."""
    train_set = limit(CIFAR10(args.data_dir, train=True, download=True), args.limit_train)
    test_set = limit(CIFAR10(args.data_dir, train=False, download=True), args.limit_test)
    print(f"train: {train_set}\ntest:  {test_set}\ndevice: {device}")
    if args.rank == 0:
        sample_grid(train_set, n=25, path=f"{args.out}/samples.png", title="CIFAR-10: training samples")

    normalize = Normalize(CIFAR_MEAN, CIFAR_STD)
    augment = Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), normalize])
    train = train_loader(train_set, args, drop_last=True, device=device, transform=augment)
    require_batches(train, args, drop_last=True)
    test_loader = DataLoader(test_set, test_batch_size, device=device, transform=normalize)
    return train_set, test_set, train, test_loader


def fit_one_cycle(model, args, train_loader, test_loader):
    """SGD with Nesterov momentum 0.9 and weight decay 5e-4, OneCycleLR up to ``args.lr`` stepped
    after every batch (also used by cifar10_resnet.py). Returns fit's history."""
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scheduler = optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, epochs=args.epochs,
                                              steps_per_epoch=len(train_loader))  # fmt: skip
    return fit(model, train_loader, test_loader, optimizer, args.epochs, scheduler=scheduler,
               callbacks=epoch_printer(args), checkpoint_dir=args.out, resume=args.resume,
               progress=not args.no_progress)  # fmt: skip


if __name__ == "__main__":
    run(main)
