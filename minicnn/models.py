"""Ready-made models shared by the examples, benchmarks and parity tests.

``mnist_cnn()`` and ``cifar_cnn()`` take ``layers=`` (default ``minicnn.nn``): since minicnn's layers
have PyTorch's names and signatures, ``mnist_cnn(layers=torch.nn)`` builds the identical PyTorch
model, with the same state-dict keys -- handy for checking minicnn against PyTorch.
"""

from __future__ import annotations

from minicnn import nn
from minicnn.nn import functional as F


def mnist_cnn(num_classes: int = 10, *, layers=None):
    """Two conv blocks for 1x28x28 images (50,378 parameters):

    Conv(1->32, 3x3, pad 1)-BN-ReLU-MaxPool(2) -> Conv(32->64, 3x3, pad 1)-BN-ReLU-MaxPool(2)
    -> Flatten -> Linear(3136, 10).
    """
    L = nn if layers is None else layers
    return L.Sequential(
        L.Conv2d(1, 32, 3, padding=1),
        L.BatchNorm2d(32),
        L.ReLU(),
        L.MaxPool2d(2),
        L.Conv2d(32, 64, 3, padding=1),
        L.BatchNorm2d(64),
        L.ReLU(),
        L.MaxPool2d(2),
        L.Flatten(),
        L.Linear(64 * 7 * 7, num_classes),
    )


def cifar_cnn(num_classes: int = 10, dropout: float = 0.5, *, layers=None):
    """Three conv blocks for 3x32x32 images (620,810 parameters):

    [Conv(3x3, pad 1)-BN-ReLU-MaxPool(2)] x 3 with 32/64/128 channels -> Flatten ->
    Linear(2048, 256) -> ReLU -> Dropout(0.5) -> Linear(256, 10).
    """
    L = nn if layers is None else layers

    def block(c_in, c_out):
        return [L.Conv2d(c_in, c_out, 3, padding=1), L.BatchNorm2d(c_out), L.ReLU(), L.MaxPool2d(2)]

    return L.Sequential(
        *block(3, 32),
        *block(32, 64),
        *block(64, 128),
        L.Flatten(),
        L.Linear(128 * 4 * 4, 256),
        L.ReLU(),
        L.Dropout(dropout),
        L.Linear(256, num_classes),
    )


class BasicBlock(nn.Module):
    """out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), two 3x3 convs (He et al. 2016).

    The shortcut is the identity, or a 1x1 conv + BN ("downsample") when the stride or the
    number of channels changes.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.downsample = None

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


class ResNet(nn.Module):
    """A CIFAR ResNet (He et al. 2016, section 4.2): a 3x3 stem, three stages of BasicBlocks with
    ``width``, 2*``width`` and 4*``width`` channels (stages 2 and 3 halve the resolution),
    global average pooling and a linear classifier. Key names follow torchvision
    (``conv1``, ``layer1.0.bn2``, ``fc``)."""

    def __init__(self, blocks_per_stage=(3, 3, 3), num_classes: int = 10, width: int = 16):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        channels = width
        stages = []
        for i, n in enumerate(blocks_per_stage):
            out_channels = width * 2**i
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(channels, out_channels, stride)]
            blocks += [BasicBlock(out_channels, out_channels) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            channels = out_channels
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))


def resnet(depth: int = 20, num_classes: int = 10, width: int = 16) -> ResNet:
    """CIFAR ResNet-``depth`` with depth = 6n + 2 (20, 32, 44, 56...): n BasicBlocks per stage.

    ResNet-20 with width 16 has 272,474 parameters.
    """
    if depth < 8 or (depth - 2) % 6 != 0:
        raise ValueError(f"resnet: depth must be 6n + 2 (20, 32, 44, 56, ...), got {depth}")
    n = (depth - 2) // 6
    return ResNet((n, n, n), num_classes=num_classes, width=width)
