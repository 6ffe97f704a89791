"""Flattened network (Jin, Dundar & Culurciello 2014, "Flattened Convolutional Neural
Networks for Feedforward Acceleration", arXiv:1412.5474).

A flattened layer replaces each 3-D filter with rank-one 1-D filters applied in
sequence: lateral (across channels, a 1x1 conv), vertical (k x 1, per channel) and
horizontal (1 x k, per channel), each with a bias and no non-linearity in between. The
paper stacks two L-V-H sets per layer (l = 2, chosen by cross-validation) and pads the
1-D convs so the output keeps the baseline layer's size. For a k x k filter bank from M
to N channels the weights drop from k*k*M*N to about M*N + N*N + 4*k*N.

Both networks here are CIFAR-scale (32x32, 10 classes) and share one stage table: the
flattened net and its 3-D baseline (``flattened_net_baseline``), so the paper's
comparison (same accuracy, fewer weights, faster feed-forward) can be measured on a
device. The first layer stays a plain conv, as lateral filtering over three input
channels saves nothing. The table is ours (the paper's exact CIFAR configuration is not
reproduced); its structure follows the paper's description.
"""

from __future__ import annotations

import keras
from keras import layers

from models_keras.blocks import cifar_stack, image_input, register_with_baseline

PAPER = "Jin et al. 2014, Flattened CNNs, arXiv:1412.5474 (Sec. 3, Fig. 2)"

STEM = (64, 3)  # filters, kernel of the plain first layer
# c: output channels, k: kernel, n: layers, pool: 2x2 max-pool after the stage
STAGES: tuple[tuple[int, int, int, bool], ...] = (
    (96, 5, 2, True),
    (128, 5, 2, True),
    (256, 5, 2, False),
)
LVH_SETS = 2  # l of the paper


def flattened_layer(x: keras.KerasTensor, filters: int, kernel: int, *, name: str):
    """``LVH_SETS`` lateral/vertical/horizontal 1-D convs (``name.l1``, ``name.v1``,
    ``name.h1``, ``name.l2``...), biases, then one ReLU ``name.act``."""
    for i in range(1, LVH_SETS + 1):
        x = layers.Conv2D(filters, 1, name=f"{name}.l{i}")(x)
        x = layers.DepthwiseConv2D((kernel, 1), padding="same", name=f"{name}.v{i}")(x)
        x = layers.DepthwiseConv2D((1, kernel), padding="same", name=f"{name}.h{i}")(x)
    return layers.ReLU(name=f"{name}.act")(x)


def full_layer(x: keras.KerasTensor, filters: int, kernel: int, *, name: str):
    """The baseline's 3-D conv layer: ``name.conv`` + ``name.act``."""
    x = layers.Conv2D(filters, kernel, padding="same", name=f"{name}.conv")(x)
    return layers.ReLU(name=f"{name}.act")(x)


def cifar_net(*, factored: bool, name: str, resolution: int, num_classes: int,
              include_top: bool, dropout: float) -> keras.Model:
    """Plain stem, then the stage table with flattened (or full 3-D) layers."""
    inputs = image_input(resolution)
    x = full_layer(inputs, STEM[0], STEM[1], name="stem")
    rows = [((filters, kernel), count, pool) for filters, kernel, count, pool in STAGES]
    return cifar_stack(inputs, x, rows, flattened_layer if factored else full_layer, name=name,
                       num_classes=num_classes, include_top=include_top, dropout=dropout)


register_with_baseline(name="flattened_net", family="flattened", paper=PAPER,
                       description="rank-one lateral/vertical/horizontal 1-D filters (CIFAR scale)",
                       build=cifar_net)
