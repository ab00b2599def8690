"""``minicnn.optim``: optimizers and learning-rate schedulers with PyTorch's names, defaults and numerics.

opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
for epoch in range(epochs):
    for x, y in loader:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    sched.step()
"""

from minicnn.optim import lr_scheduler, swa_utils
from minicnn.optim.adadelta import Adadelta
from minicnn.optim.adagrad import Adagrad
from minicnn.optim.adam import Adam, AdamW
from minicnn.optim.optimizer import Optimizer
from minicnn.optim.rmsprop import RMSprop
from minicnn.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adadelta", "Adagrad", "lr_scheduler", "swa_utils"]
