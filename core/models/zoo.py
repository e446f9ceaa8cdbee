"""Network architectures for tile classification, as Gluon ``HybridBlock`` s (random initialisation).

Every network takes float32 NCHW input (normalised RGB) and returns unnormalised class scores.
"""

from __future__ import annotations

from mxnet.gluon import nn

from core.errors import ModelError
from core.models.reports import ARCH_NAMES

#: BatchNorm running statistics follow the batches faster than MXNet's default (0.9): a few slides
#: give only tens of updates per training run, and with 0.9 the statistics used at inference would
#: still be mostly their initial values (predictions collapse to one class).
BN_MOMENTUM = 0.8


def _conv_block(channels: int) -> nn.HybridSequential:
    block = nn.HybridSequential()
    block.add(
        nn.Conv2D(channels, kernel_size=3, padding=1, use_bias=False),
        nn.BatchNorm(momentum=BN_MOMENTUM),
        nn.Activation("relu"),
        nn.MaxPool2D(pool_size=2, strides=2),
    )
    return block


def compact_cnn(classes: int = 2, widths=(32, 64, 128, 256), dropout: float = 0.3) -> nn.HybridSequential:
    """A small CNN for 64-128 px tiles.

    Parameters
    ----------
    classes : int
        Number of output classes.
    widths : sequence of int
        Channels of each conv block (conv 3x3, BatchNorm, ReLU, max-pool 2x2).
    dropout : float
        Dropout before the final dense layer.

    Returns
    -------
    mxnet.gluon.nn.HybridSequential
    """
    net = nn.HybridSequential()
    for width in widths:
        net.add(_conv_block(width))
    net.add(nn.GlobalAvgPool2D(), nn.Flatten(), nn.Dropout(dropout), nn.Dense(classes))
    return net


class BasicBlockV1(nn.HybridBlock):
    """ResNet V1 basic block: two 3x3 convs with BatchNorm, identity or 1x1 projection shortcut."""

    def __init__(self, channels: int, stride: int, downsample: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.body = nn.HybridSequential()
        self.body.add(
            nn.Conv2D(channels, 3, stride, 1, use_bias=False),
            nn.BatchNorm(momentum=BN_MOMENTUM),
            nn.Activation("relu"),
            nn.Conv2D(channels, 3, 1, 1, use_bias=False),
            nn.BatchNorm(momentum=BN_MOMENTUM),
        )
        if downsample:
            self.downsample = nn.HybridSequential()
            self.downsample.add(nn.Conv2D(channels, 1, stride, use_bias=False), nn.BatchNorm(momentum=BN_MOMENTUM))
        else:
            self.downsample = None

    def hybrid_forward(self, F, x):
        residual = x if self.downsample is None else self.downsample(x)
        return F.Activation(self.body(x) + residual, act_type="relu")


def resnet18_v1(classes: int = 2) -> nn.HybridSequential:
    """ResNet-18 (V1, He et al. 2016) with a ``classes``-way dense head; randomly initialised.

    Parameters
    ----------
    classes : int
        Number of output classes.

    Returns
    -------
    mxnet.gluon.nn.HybridSequential
    """
    net = nn.HybridSequential()
    net.add(
        nn.Conv2D(64, 7, 2, 3, use_bias=False),
        nn.BatchNorm(momentum=BN_MOMENTUM),
        nn.Activation("relu"),
        nn.MaxPool2D(3, 2, 1),
    )
    in_channels = 64
    for channels, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        stage = nn.HybridSequential()
        stage.add(BasicBlockV1(channels, stride, downsample=channels != in_channels or stride != 1))
        stage.add(BasicBlockV1(channels, 1))
        net.add(stage)
        in_channels = channels
    net.add(nn.GlobalAvgPool2D(), nn.Flatten(), nn.Dense(classes))
    return net


ARCHS = {"cnn": compact_cnn, "resnet18": resnet18_v1}
assert tuple(ARCHS) == ARCH_NAMES, "core.models.reports.ARCH_NAMES lists the architectures built here"


def build(arch: str, classes: int = 2):
    """Build an uninitialised network by name.

    Parameters
    ----------
    arch : str
        One of `ARCHS` (``"cnn"``, ``"resnet18"``).
    classes : int
        Number of output classes.

    Raises
    ------
    ModelError
        If ``arch`` is unknown; the message lists the choices.
    """
    try:
        factory = ARCHS[arch]
    except KeyError:
        raise ModelError(
            f"unknown model architecture {arch!r}; choose one of: {', '.join(sorted(ARCHS))}"
        ) from None
    if int(classes) < 2:
        raise ModelError(f"a classifier needs at least 2 classes, got {classes}")
    return factory(classes=int(classes))
