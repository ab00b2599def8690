"""Train the MNIST CNN (minicnn.models.mnist_cnn), Adam + cosine decay: over 99% test accuracy in 5 epochs.

    python examples/mnist_cnn.py                                  # ./data, downloaded if absent
    python examples/mnist_cnn.py --data-dir /path/with/MNIST/raw --epochs 1 --limit-train 5000
    python -m minicnn.distributed.run --nproc-per-node 2 examples/mnist_cnn.py --distributed

Prints a line per epoch and the final test accuracy; writes a checkpoint, the history and
figures to --out (see docs/examples.md).
"""

from __future__ import annotations

from common import (
    epoch_printer,
    limit,
    parse_args,
    pick_device,
    process_seed,
    run,
    setup_distributed,
    train_loader,
    unwrap,
    wrap_model,
    write_report,
)

import minicnn as mc
from minicnn import optim
from minicnn.data import MNIST, DataLoader, Normalize, sample_grid
from minicnn.models import mnist_cnn
from minicnn.train import fit

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)  # pixel statistics of the training set, 0-1 scale


def main(argv=None):
    args = parse_args(argv, __doc__.splitlines()[0], epochs=5, batch_size=64, lr=1e-3, out="runs/mnist_cnn",
                      add_arguments=_optimizer_argument)  # fmt: skip
    device = pick_device(args.device)
    setup_distributed(args)
    mc.manual_seed(process_seed(args))

    train_set = limit(MNIST(args.data_dir, train=True, download=True), args.limit_train)
    test_set = limit(MNIST(args.data_dir, train=False, download=True), args.limit_test)
    print(f"train: {train_set}\ntest:  {test_set}\ndevice: {device}")
    if args.rank == 0:
        sample_grid(train_set, n=25, path=f"{args.out}/samples.png", title="MNIST: training samples")

    normalize = Normalize(MNIST_MEAN, MNIST_STD)
    train = train_loader(train_set, args, device=device, transform=normalize)
    test_loader = DataLoader(test_set, 1000, device=device, transform=normalize)

    model = wrap_model(mnist_cnn().to(device), args)
    print(model)
    if args.optimizer == "sgd":  # (lesson 10 measures the linear scaling rule with it)
        optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    else:
        optimizer = optim.Adam(model.parameters(), lr=args.lr)
    # Cosine decay from --lr to 0 over the run (stepped once per epoch): the last epochs settle
    # into a minimum instead of bouncing around it at full learning rate.
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    history = fit(model, train, test_loader, optimizer, args.epochs, scheduler=scheduler,
                  callbacks=epoch_printer(args), checkpoint_dir=args.out, resume=args.resume,
                  progress=not args.no_progress)  # fmt: skip
    if args.rank == 0:  # one process writes the report
        return write_report(unwrap(model), history, test_set, test_loader, args.out, "MNIST CNN")


def _optimizer_argument(parser):
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                        help="adam, or sgd with momentum 0.9 (give it --lr 0.01 or so)")  # fmt: skip


if __name__ == "__main__":
    run(main)
