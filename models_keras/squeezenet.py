"""SqueezeNet 1.0 and 1.1 (Iandola et al. 2016, "SqueezeNet: AlexNet-level accuracy
with 50x fewer parameters and <0.5MB model size", arXiv:1602.07360).

Fire modules: a 1x1 "squeeze" layer feeding parallel 1x1 and 3x3 "expand" layers
whose outputs are concatenated. Down-sampling is late (max-pools between stages), the
classifier is a 1x1 conv and global pooling, and there is no batch norm. Version 1.1
(the reference repository's revision) uses a 3x3 stem and pools earlier: about 2.4x
less computation for the same accuracy.
"""

from __future__ import annotations

import keras
from keras import layers

from models_keras.blocks import common_knobs, finish, image_input
from models_keras.registry import PaperFigure, register_model

PAPER = "Iandola et al. 2016, SqueezeNet, arXiv:1602.07360 (Table 1)"
TORCHVISION = "torchvision squeezenet reference implementation (0.82/0.35 GFLOPS)"

Fire = tuple[int, int, int]  # squeeze, expand 1x1, expand 3x3 channels
# One tuple of fire modules per stage; a 3x3 stride-2 max-pool precedes every stage.
FIRES_1_0: tuple[tuple[Fire, ...], ...] = (
    ((16, 64, 64), (16, 64, 64), (32, 128, 128)),
    ((32, 128, 128), (48, 192, 192), (48, 192, 192), (64, 256, 256)),
    ((64, 256, 256),),
)
FIRES_1_1: tuple[tuple[Fire, ...], ...] = (
    ((16, 64, 64), (16, 64, 64)),
    ((32, 128, 128), (32, 128, 128)),
    ((48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256)),
)
KNOBS = (*common_knobs(resolution=224, min_resolution=64),)


def _conv(x: keras.KerasTensor, filters: int, kernel: int, *, name: str, strides: int = 1,
          padding: str = "same") -> keras.KerasTensor:
    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, name=f"{name}.conv")(x)
    return layers.ReLU(name=f"{name}.act")(x)


def ceil_max_pool(x: keras.KerasTensor, *, name: str) -> keras.KerasTensor:
    """3x3 stride-2 max-pool with the reference code's ceil rounding: pad the bottom
    and right edge by one when the window would not cover it (inputs are post-ReLU,
    so zero padding never wins the max)."""
    if (x.shape[1] - 3) % 2:
        x = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}.pad")(x)
    return layers.MaxPooling2D(3, strides=2, name=name)(x)


def fire(x: keras.KerasTensor, squeeze: int, expand1: int, expand3: int, *, name: str):
    """Fire module: ``name.squeeze`` -> (``name.expand1`` | ``name.expand3``) -> ``name.concat``."""
    x = _conv(x, squeeze, 1, name=f"{name}.squeeze")
    left = _conv(x, expand1, 1, name=f"{name}.expand1")
    right = _conv(x, expand3, 3, name=f"{name}.expand3")
    return layers.Concatenate(name=f"{name}.concat")([left, right])


def squeezenet(
    stages: tuple[tuple[Fire, ...], ...], *, name: str, stem: tuple[int, int],
    resolution: int, num_classes: int, include_top: bool, dropout: float,
) -> keras.Model:
    """Build SqueezeNet from its fire-module table; ``stem`` is (filters, kernel)."""
    inputs = image_input(resolution)
    x = _conv(inputs, stem[0], stem[1], strides=2, padding="valid", name="stem")
    number = 2  # fire modules are numbered fire2..fire9 as in the paper
    for stage, fires in enumerate(stages, start=2):
        x = ceil_max_pool(x, name=f"stage{stage}.pool")
        for squeeze, expand1, expand3 in fires:
            x = fire(x, squeeze, expand1, expand3, name=f"stage{stage}.fire{number}")
            number += 1
    if include_top:
        if dropout > 0:
            x = layers.Dropout(dropout, name="classifier.dropout")(x)
        x = _conv(x, num_classes, 1, name="classifier")
        x = layers.GlobalAveragePooling2D(name="classifier.pool")(x)
        x = layers.Softmax(name="classifier.softmax")(x)
    return finish(inputs, x, name=name)


@register_model(
    name="squeezenet1_0", family="squeezenet", knobs=KNOBS, paper=PAPER,
    figures=(PaperFigure((), 820, 1.248424, macs_tolerance=0.03,
                         source=f"{PAPER}; {TORCHVISION}"),),
    description="fire modules, 7x7 stem", test_resolution=64,
)
def squeezenet1_0(**knobs: object) -> keras.Model:
    """Build SqueezeNet 1.0 (96-filter 7x7 stem, pools after fire4 and fire8)."""
    return squeezenet(FIRES_1_0, name="squeezenet1_0", stem=(96, 7), **knobs)


@register_model(
    name="squeezenet1_1", family="squeezenet", knobs=KNOBS, paper=PAPER,
    figures=(PaperFigure((), 350, 1.235496, macs_tolerance=0.03,
                         source=f"SqueezeNet repository v1.1; {TORCHVISION}"),),
    description="fire modules, 3x3 stem, 2.4x cheaper", test_resolution=64,
)
def squeezenet1_1(**knobs: object) -> keras.Model:
    """Build SqueezeNet 1.1 (64-filter 3x3 stem, pools after fire3 and fire5)."""
    return squeezenet(FIRES_1_1, name="squeezenet1_1", stem=(64, 3), **knobs)
