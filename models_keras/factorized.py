"""Factorized network (Wang, Liu & Foroosh 2016/2017, "Factorized Convolutional Neural
Networks", arXiv:1608.04337).

A factorized layer unravels a 3-D k x k convolution from C to C' channels into a single
intra-channel convolution (one k x k filter per channel, ``name.sic``) and a linear
channel projection (``name.project``). Topological subdivisioning connects each output
channel to a subset of the inputs only: the projection is grouped (g groups). A
residual connection (``name.add``) bypasses the layer where its input and output
shapes agree. Per layer the MACs drop from H*W*k*k*C*C' to H*W*(k*k*C + C*C'/g).

Both networks here are CIFAR-scale (32x32, 10 classes) and share one stage table: the
factorized net and its 3-D baseline (``factorized_net_baseline``: the same table with
full k x k convolutions and the same residual connections). The table is ours: the
paper's exact configurations are not reproduced; its structure follows the paper's
description (single intra-channel convolution, grouped projection, residual
connections). The paper's spatial "bottleneck" variant is not built.
"""

from __future__ import annotations

import keras
from keras import layers

from models_keras.blocks import cifar_stack, conv_bn, image_input, register_with_baseline

PAPER = "Wang, Liu & Foroosh 2017, Factorized CNNs, arXiv:1608.04337 (Sec. 3)"

STEM = (64, 3)  # filters, kernel of the plain first layer
# c: output channels, k: kernel, n: layers, g: projection groups (topological
# subdivisioning), pool: 2x2 max-pool after the stage
STAGES: tuple[tuple[int, int, int, int, bool], ...] = (
    (128, 3, 3, 2, True),
    (256, 3, 3, 4, True),
    (512, 3, 3, 8, False),
)


def factorized_layer(x: keras.KerasTensor, filters: int, kernel: int, groups: int, *,
                     name: str) -> keras.KerasTensor:
    """Single intra-channel k x k convolution, grouped linear projection, batch norm and
    ReLU, plus the input when the shapes agree."""
    y = layers.DepthwiseConv2D(kernel, padding="same", use_bias=False, name=f"{name}.sic")(x)
    y = conv_bn(y, filters, 1, groups=groups, act="relu", name=f"{name}.project")
    return _residual(x, y, name=name)


def full_layer(x: keras.KerasTensor, filters: int, kernel: int, groups: int, *,
               name: str) -> keras.KerasTensor:
    """The baseline's 3-D k x k convolution (``groups`` unused), batch norm, ReLU and
    the same residual connection."""
    del groups
    y = conv_bn(x, filters, kernel, act="relu", name=name)
    return _residual(x, y, name=name)


def _residual(x: keras.KerasTensor, y: keras.KerasTensor, *, name: str) -> keras.KerasTensor:
    return layers.Add(name=f"{name}.add")([x, y]) if x.shape == y.shape else y


def cifar_net(*, factored: bool, name: str, resolution: int, num_classes: int,
              include_top: bool, dropout: float) -> keras.Model:
    """Plain stem, then the stage table with factorized (or full 3-D) layers."""
    inputs = image_input(resolution)
    x = conv_bn(inputs, STEM[0], STEM[1], act="relu", name="stem")
    rows = [((filters, kernel, groups), count, pool)
            for filters, kernel, count, groups, pool in STAGES]
    return cifar_stack(inputs, x, rows, factorized_layer if factored else full_layer,
                       name=name, num_classes=num_classes, include_top=include_top,
                       dropout=dropout)


register_with_baseline(name="factorized_net", family="factorized", paper=PAPER,
                       description="single intra-channel conv + grouped projection, residual (CIFAR scale)",
                       build=cifar_net)
