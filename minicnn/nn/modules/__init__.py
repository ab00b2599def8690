"""The layers, one file per family (containers, conv, pooling, norm, dropout, linear, activation, loss)."""

from minicnn.nn.modules.activation import ELU, GELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, SiLU, Softmax, Tanh
from minicnn.nn.modules.batchnorm import BatchNorm1d, BatchNorm2d
from minicnn.nn.modules.container import ModuleList, Sequential
from minicnn.nn.modules.conv import Conv2d
from minicnn.nn.modules.conv_transpose import ConvTranspose2d
from minicnn.nn.modules.dropout import Dropout, Dropout2d
from minicnn.nn.modules.linear import Flatten, Identity, Linear
from minicnn.nn.modules.loss import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, NLLLoss
from minicnn.nn.modules.pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
