"""Xception (Chollet 2017, "Xception: Deep Learning with Depthwise Separable
Convolutions", arXiv:1610.02357, Figure 5).

Entry flow (two plain convs, then separable-conv blocks with strided 1x1 shortcuts),
a middle flow of eight identical residual blocks, and an exit flow; every conv but
the first two is depthwise separable.
"""

from __future__ import annotations

import keras
from keras import layers

from models_keras.blocks import (
    BN_EPSILON, classifier, common_knobs, finish, image_input, keras_twin,
)
from models_keras.registry import PaperFigure, register_model

PAPER = "Chollet 2017, Xception, arXiv:1610.02357 (Figure 5, Table 3)"

# Entry and exit blocks: (filters of the two separable convs, ReLU before the first).
# Each ends in a 3x3 stride-2 max-pool and adds a strided 1x1 conv shortcut.
ENTRY: tuple[tuple[tuple[int, int], bool], ...] = (
    ((128, 128), False),
    ((256, 256), True),
    ((728, 728), True),
)
MIDDLE_UNITS, MIDDLE_CHANNELS = 8, 728
EXIT: tuple[tuple[tuple[int, int], bool], ...] = (((728, 1024), True),)
EXIT_CONVS = (1536, 2048)


def _bn(x: keras.KerasTensor, name: str) -> keras.KerasTensor:
    return layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}.bn")(x)


def _sep(x: keras.KerasTensor, filters: int, *, relu_first: bool, name: str):
    if relu_first:
        x = layers.ReLU(name=f"{name}.pre_act")(x)
    x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"{name}.conv")(x)
    return _bn(x, name)


def down_block(x: keras.KerasTensor, filters: tuple[int, int], *, relu_first: bool, name: str):
    """Two separable convs + max-pool, plus a strided 1x1 conv shortcut: ``name.sep1``,
    ``name.sep2``, ``name.pool``, ``name.shortcut``, ``name.add``."""
    shortcut = layers.Conv2D(filters[1], 1, strides=2, padding="same", use_bias=False,
                             name=f"{name}.shortcut.conv")(x)
    shortcut = _bn(shortcut, f"{name}.shortcut")
    x = _sep(x, filters[0], relu_first=relu_first, name=f"{name}.sep1")
    x = _sep(x, filters[1], relu_first=True, name=f"{name}.sep2")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}.pool")(x)
    return layers.Add(name=f"{name}.add")([x, shortcut])


def _stem(x: keras.KerasTensor) -> keras.KerasTensor:
    for i, (filters, strides) in enumerate(((32, 2), (64, 1)), start=1):
        x = layers.Conv2D(filters, 3, strides=strides, use_bias=False,
                          name=f"stem.conv{i}.conv")(x)
        x = _bn(x, f"stem.conv{i}")
        x = layers.ReLU(name=f"stem.conv{i}.act")(x)
    return x


@register_model(
    name="xception", family="xception", knobs=common_knobs(resolution=299, min_resolution=71),
    # The paper publishes params (Table 3: 22,855,952 learnable) but no MACs.
    paper=PAPER, figures=(PaperFigure((), None, 22.855952, source=PAPER + " Table 3"),),
    keras_twin=keras_twin("Xception"), description="depthwise separable everywhere",
    test_resolution=71,
)
def xception(*, resolution: int, num_classes: int, include_top: bool, dropout: float) -> keras.Model:
    """Build Xception (entry, middle and exit flows)."""
    inputs = image_input(resolution)
    x = _stem(inputs)
    for i, (filters, relu_first) in enumerate(ENTRY, start=1):
        x = down_block(x, filters, relu_first=relu_first, name=f"stage1.block{i}")
    for i in range(1, MIDDLE_UNITS + 1):
        y = x
        for j in range(1, 4):
            y = _sep(y, MIDDLE_CHANNELS, relu_first=True, name=f"stage2.block{i}.sep{j}")
        x = layers.Add(name=f"stage2.block{i}.add")([x, y])
    x = down_block(x, EXIT[0][0], relu_first=EXIT[0][1], name="stage3.block1")
    for j, filters in enumerate(EXIT_CONVS, start=1):
        x = _sep(x, filters, relu_first=False, name=f"head.sep{j}")
        x = layers.ReLU(name=f"head.sep{j}.act")(x)
    if include_top:
        x = classifier(x, num_classes=num_classes, dropout=dropout)
    return finish(inputs, x, name="xception")
