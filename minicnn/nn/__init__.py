"""``minicnn.nn``: ``Module``, layers with PyTorch's names, signatures and default initialisation,
``init`` (weight initialisers) and ``functional`` (``F``, the ops as functions)."""

from minicnn.nn import functional, init, parallel, utils
from minicnn.nn.module import IncompatibleKeys, Module, RemovableHandle
from minicnn.nn.modules import (
    ELU,
    GELU,
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    BCELoss,
    BCEWithLogitsLoss,
    Conv2d,
    ConvTranspose2d,
    CrossEntropyLoss,
    Dropout,
    Dropout2d,
    Flatten,
    Identity,
    LeakyReLU,
    Linear,
    LogSoftmax,
    MaxPool2d,
    ModuleList,
    MSELoss,
    NLLLoss,
    ReLU,
    Sequential,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
)
from minicnn.nn.modules.syncbatchnorm import SyncBatchNorm
from minicnn.nn.parameter import Parameter
