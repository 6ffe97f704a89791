"""MobileNet V1 (Howard et al. 2017, "MobileNets: Efficient Convolutional Neural
Networks for Mobile Vision Applications", arXiv:1704.04861).

A 3x3 stride-2 stem, then depthwise separable units (3x3 depthwise + 1x1 pointwise,
each with BN and ReLU), then pooling and a classifier. Two knobs: the width multiplier
alpha thins every layer, the resolution multiplier rho sets the input size.
"""

from __future__ import annotations

import keras

from models_keras.blocks import (
    keras_twin,
    classifier, common_knobs, conv_bn, depthwise_bn, finish, image_input, make_divisible,
)
from models_keras.registry import Knob, PaperFigure, register_model

PAPER = "Howard et al. 2017, MobileNets, arXiv:1704.04861 (Tables 6-7)"

# c: output channels of the pointwise conv, n: units, s: stride of the first unit.
# One row per stage; a stage ends where the resolution halves.
STAGES: tuple[tuple[int, int, int], ...] = (
    # c,    n, s
    (64,    1, 1),
    (128,   2, 2),
    (256,   2, 2),
    (512,   6, 2),
    (1024,  2, 2),
)
STEM_CHANNELS = 32

KNOBS = (
    Knob("width_multiplier", float, 1.0, choices=(0.25, 0.5, 0.75, 1.0), short="w",
         help="alpha: thins every layer"),
    *common_knobs(resolution=224),
)

FIGURES = (
    PaperFigure((("width_multiplier", 1.0),), 569, 4.2, source=PAPER + " Table 6"),
    PaperFigure((("width_multiplier", 0.75),), 325, 2.6, source=PAPER + " Table 6"),
    PaperFigure((("width_multiplier", 0.5),), 149, 1.3, source=PAPER + " Table 6"),
    PaperFigure((("width_multiplier", 0.25),), 41, 0.5, source=PAPER + " Table 6"),
    PaperFigure((("resolution", 192),), 418, 4.2, source=PAPER + " Table 7"),
    PaperFigure((("resolution", 160),), 290, 4.2, source=PAPER + " Table 7"),
    PaperFigure((("resolution", 128),), 186, 4.2, source=PAPER + " Table 7"),
)


def separable_unit(x: keras.KerasTensor, filters: int, *, strides: int, name: str):
    """Depthwise separable unit: ``name.dw`` (3x3 depthwise) then ``name.pw`` (1x1)."""
    x = depthwise_bn(x, 3, strides=strides, name=f"{name}.dw")
    return conv_bn(x, filters, 1, name=f"{name}.pw")


@register_model(
    name="mobilenet_v1", family="mobilenet_v1", knobs=KNOBS, paper=PAPER, figures=FIGURES,
    keras_twin=keras_twin("MobileNet"), description="depthwise separable convolutions",
)
def mobilenet_v1(
    *, width_multiplier: float, resolution: int, num_classes: int, include_top: bool,
    dropout: float,
) -> keras.Model:
    """Build MobileNet V1 for the given width multiplier and input resolution."""
    inputs = image_input(resolution)
    x = conv_bn(inputs, make_divisible(STEM_CHANNELS * width_multiplier), 3, strides=2,
                name="stem")
    for stage, (channels, units, stride) in enumerate(STAGES, start=1):
        for unit in range(units):
            x = separable_unit(x, make_divisible(channels * width_multiplier),
                               strides=stride if unit == 0 else 1,
                               name=f"stage{stage}.unit{unit + 1}")
    if include_top:
        x = classifier(x, num_classes=num_classes, dropout=dropout)
    return finish(inputs, x, name="mobilenet_v1")
