"""MobileNet V2 (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear
Bottlenecks", arXiv:1801.04381).

Inverted residual units: a 1x1 expansion (ReLU6), a 3x3 depthwise conv (ReLU6) and a
linear 1x1 projection, with a residual add when the shape is kept.
"""

from __future__ import annotations

import keras

from models_keras.blocks import (
    keras_twin,
    classifier, common_knobs, conv_bn, finish, image_input, inverted_residual, make_divisible,
)
from models_keras.registry import Knob, PaperFigure, register_model

PAPER = "Sandler et al. 2018, MobileNetV2, arXiv:1801.04381 (Table 2)"
SLIM = "TF-slim MobileNetV2 reference checkpoints table"

# t: expansion factor, c: output channels, n: units, s: stride of the first unit.
STAGES: tuple[tuple[int, int, int, int], ...] = (
    # t, c,   n, s
    (1, 16,  1, 1),
    (6, 24,  2, 2),
    (6, 32,  3, 2),
    (6, 64,  4, 2),
    (6, 96,  3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280

KNOBS = (
    Knob("width_multiplier", float, 1.0, choices=(0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
         short="w", help="alpha: thins (or widens) every layer"),
    *common_knobs(resolution=224),
)

FIGURES = (
    PaperFigure((("width_multiplier", 1.0),), 300, 3.4, source=PAPER + " Table 4"),
    PaperFigure((("width_multiplier", 1.4),), 582, 6.06, source=SLIM),
    PaperFigure((("width_multiplier", 0.75),), 209, 2.61, source=SLIM),
    PaperFigure((("width_multiplier", 0.5),), 97, 1.95, source=SLIM),
    PaperFigure((("width_multiplier", 0.35),), 59, 1.66, source=SLIM),
    PaperFigure((("resolution", 160),), 154, 3.47, source=SLIM),
    PaperFigure((("resolution", 128),), 99, 3.47, source=SLIM),
)


@register_model(
    name="mobilenet_v2", family="mobilenet_v2", knobs=KNOBS, paper=PAPER, figures=FIGURES,
    keras_twin=keras_twin("MobileNetV2"), description="inverted residuals, linear bottlenecks",
)
def mobilenet_v2(
    *, width_multiplier: float, resolution: int, num_classes: int, include_top: bool,
    dropout: float,
) -> keras.Model:
    """Build MobileNet V2 for the given width multiplier and input resolution."""
    inputs = image_input(resolution)
    x = conv_bn(inputs, make_divisible(STEM_CHANNELS * width_multiplier), 3, strides=2,
                act="relu6", name="stem")
    for stage, (expansion, channels, units, stride) in enumerate(STAGES, start=1):
        for unit in range(units):
            x = inverted_residual(
                x, expanded=expansion * x.shape[-1],
                filters=make_divisible(channels * width_multiplier),
                strides=stride if unit == 0 else 1, name=f"stage{stage}.unit{unit + 1}",
            )
    head = make_divisible(HEAD_CHANNELS * max(1.0, width_multiplier))
    x = conv_bn(x, head, 1, act="relu6", name="head")
    if include_top:
        x = classifier(x, num_classes=num_classes, dropout=dropout)
    return finish(inputs, x, name="mobilenet_v2")
