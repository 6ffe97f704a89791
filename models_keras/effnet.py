"""EffNet (Freeman, Roese-Koerner & Kummert 2018, "EffNet: An Efficient Structure
for Convolutional Neural Networks", arXiv:1801.06434).

The EffNet block factorises a 3x3 conv into a 1x1 bottleneck, a 1x3 depthwise conv,
a separable 2x1 max-pool (height only), a 3x1 depthwise conv and a 2x1 pointwise conv
with stride 2 along the width. The network starts with an EffNet block instead of a
plain conv (the paper's point: the first layer is costly too). Built at the paper's
CIFAR-10 scale (32x32, 10 classes) with a configurable input size.
"""

from __future__ import annotations

import keras
from keras import layers

from models_keras.blocks import common_knobs, conv_bn, depthwise_bn, finish, image_input
from models_keras.registry import PaperFigure, register_model

PAPER = "Freeman et al. 2018, EffNet, arXiv:1801.06434 (Figure 1, CIFAR-10 network)"

# (bottleneck channels, output channels) of each EffNet block (the reference code's
# CIFAR-10 network: 32 -> 64 -> 128 -> 256).
BLOCKS: tuple[tuple[int, int], ...] = ((32, 64), (64, 128), (128, 256))
ACT = "leaky_relu"


def effnet_block(x: keras.KerasTensor, bottleneck: int, out: int, *, name: str):
    """EffNet block: ``name.pw``, ``name.dw_1x3``, ``name.pool``, ``name.dw_3x1``,
    ``name.pw_2x1`` (stride 2 along the width)."""
    x = conv_bn(x, bottleneck, 1, act=ACT, name=f"{name}.pw")
    x = depthwise_bn(x, (1, 3), act=ACT, name=f"{name}.dw_1x3")
    x = layers.MaxPooling2D((2, 1), strides=(2, 1), name=f"{name}.pool")(x)
    x = depthwise_bn(x, (3, 1), act=ACT, name=f"{name}.dw_3x1")
    x = layers.Conv2D(out, (2, 1), strides=(1, 2), padding="same", use_bias=False,
                      name=f"{name}.pw_2x1.conv")(x)
    x = layers.BatchNormalization(name=f"{name}.pw_2x1.bn")(x)
    return layers.LeakyReLU(name=f"{name}.pw_2x1.act")(x)


@register_model(
    name="effnet", family="effnet",
    knobs=common_knobs(resolution=32, min_resolution=8, num_classes=10), paper=PAPER,
    # The paper's CIFAR-10 table is not available here to cite; MACs and params are
    # reported by `mobilectl info`, not pinned.
    figures=(PaperFigure((), None, None, source=PAPER + " (no figure pinned)"),),
    description="1x3/3x1 depthwise + separable pooling (CIFAR scale)",
)
def effnet(*, resolution: int, num_classes: int, include_top: bool, dropout: float) -> keras.Model:
    """Build the CIFAR-scale EffNet (three EffNet blocks, flatten, dense)."""
    inputs = image_input(resolution)
    x = inputs
    for stage, (bottleneck, out) in enumerate(BLOCKS, start=1):
        x = effnet_block(x, bottleneck, out, name=f"stage{stage}")
    if include_top:
        x = layers.Flatten(name="classifier.flatten")(x)
        if dropout > 0:
            x = layers.Dropout(dropout, name="classifier.dropout")(x)
        x = layers.Dense(num_classes, name="classifier.fc")(x)
        x = layers.Softmax(name="classifier.softmax")(x)
    return finish(inputs, x, name="effnet")
