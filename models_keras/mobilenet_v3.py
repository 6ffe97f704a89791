"""MobileNet V3 Large and Small (Howard et al. 2019, "Searching for MobileNetV3",
arXiv:1905.02244), with the minimalistic variants of the reference checkpoints
(no SE, no hard-swish, 3x3 kernels only).

Inverted residuals with SE gated by hard-sigmoid, hard-swish in the deeper half, and
the efficient last stage: 1x1 conv, pooling, then a 1x1 "hidden" layer before the
classifier (1280 wide for Large, 1024 for Small, as keras.applications builds them).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from models_keras.blocks import (
    keras_twin,
    activation, common_knobs, conv_bn, finish, image_input, inverted_residual,
    make_divisible, stage_units,
)
from models_keras.registry import Knob, PaperFigure, register_model

PAPER = "Howard et al. 2019, Searching for MobileNetV3, arXiv:1905.02244 (Tables 3-4)"
KERAS_TABLE = "keras.applications MobileNetV3 docs / TF-slim checkpoint table"

# e: expansion, c: output channels, k: depthwise kernel, s: stride, se: squeeze-excite,
# a: activation (RE = ReLU, HS = hard-swish). Minimalistic: k5 -> 3, no SE, HS -> RE.
Row = tuple[float, int, int, int, bool, str]
LARGE: tuple[Row, ...] = (
    # e,   c,   k, s, se,    a
    (1,    16,  3, 1, False, "RE"),
    (4,    24,  3, 2, False, "RE"),
    (3,    24,  3, 1, False, "RE"),
    (3,    40,  5, 2, True,  "RE"),
    (3,    40,  5, 1, True,  "RE"),
    (3,    40,  5, 1, True,  "RE"),
    (6,    80,  3, 2, False, "HS"),
    (2.5,  80,  3, 1, False, "HS"),
    (2.3,  80,  3, 1, False, "HS"),
    (2.3,  80,  3, 1, False, "HS"),
    (6,    112, 3, 1, True,  "HS"),
    (6,    112, 3, 1, True,  "HS"),
    (6,    160, 5, 2, True,  "HS"),
    (6,    160, 5, 1, True,  "HS"),
    (6,    160, 5, 1, True,  "HS"),
)
SMALL: tuple[Row, ...] = (
    (1,       16, 3, 2, True,  "RE"),
    (72 / 16, 24, 3, 2, False, "RE"),
    (88 / 24, 24, 3, 1, False, "RE"),
    (4,       40, 5, 2, True,  "HS"),
    (6,       40, 5, 1, True,  "HS"),
    (6,       40, 5, 1, True,  "HS"),
    (3,       48, 5, 1, True,  "HS"),
    (3,       48, 5, 1, True,  "HS"),
    (6,       96, 5, 2, True,  "HS"),
    (6,       96, 5, 1, True,  "HS"),
    (6,       96, 5, 1, True,  "HS"),
)
STEM_CHANNELS = 16
SE_RATIO = 0.25
KNOBS = (
    Knob("width_multiplier", float, 1.0, choices=(0.75, 1.0), short="w",
         help="alpha: thins every layer but the stem"),
    *common_knobs(resolution=224),
)


def _act(code: str, minimalistic: bool) -> str:
    return "relu" if code == "RE" or minimalistic else "hard_swish"


def mobilenet_v3(
    table: Sequence[Row], *, name: str, hidden: int, width_multiplier: float,
    minimalistic: bool, resolution: int, num_classes: int, include_top: bool,
    dropout: float,
) -> keras.Model:
    """Build a MobileNet V3 from its per-unit table."""
    inputs = image_input(resolution)
    x = conv_bn(inputs, STEM_CHANNELS, 3, strides=2, act=_act("HS", minimalistic), name="stem")
    numbered = stage_units([row[3] for row in table])
    for (e, c, k, s, se, a), (stage, unit) in zip(table, numbered):
        expanded = make_divisible(x.shape[-1] * e)
        x = inverted_residual(
            x, expanded=expanded, filters=make_divisible(c * width_multiplier), strides=s,
            kernel=3 if minimalistic else k, act=_act(a, minimalistic),
            se_channels=make_divisible(expanded * SE_RATIO) if se and not minimalistic else 0,
            name=f"stage{stage}.unit{unit}",
        )
    act = _act("HS", minimalistic)
    x = conv_bn(x, make_divisible(x.shape[-1] * 6), 1, act=act, name="head")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="classifier.pool")(x)
        x = layers.Dense(make_divisible(hidden * max(1.0, width_multiplier)),
                         name="classifier.hidden")(x)
        x = activation(x, act, name="classifier.act")
        if dropout > 0:
            x = layers.Dropout(dropout, name="classifier.dropout")(x)
        x = layers.Dense(num_classes, name="classifier.fc")(x)
        x = layers.Softmax(name="classifier.softmax")(x)
    return finish(inputs, x, name=name)


def _register(name: str, table: tuple[Row, ...], hidden: int, minimalistic: bool,
              app: str, figures: tuple[PaperFigure, ...], description: str) -> None:
    def build(**knobs: object) -> keras.Model:
        return mobilenet_v3(table, name=name, hidden=hidden, minimalistic=minimalistic, **knobs)

    build.__doc__ = f"Build {name} ({description})."
    register_model(name=name, family="mobilenet_v3", knobs=KNOBS, paper=PAPER,
                   figures=figures, keras_twin=keras_twin(app, minimalistic=minimalistic,
                                                   include_preprocessing=False),
                   description=description)(build)


def _fig(width: float, macs: float | None, params: float, source: str,
         tolerance: float = 0.01) -> PaperFigure:
    return PaperFigure((("width_multiplier", width),), macs, params, macs_tolerance=tolerance,
                       source=source)


# Large: the Keras/TF-slim table (217M) describes exactly this architecture; the paper's
# Table 3 rounds it to 219M. Small: the paper's figures (the Keras table counts 66M for
# Small 1.0, so it counts Small differently). Small 0.75: the paper rounds to whole
# millions (44M), so 3%. Small minimalistic: no source counts MACs the paper's way, so
# only its params are pinned (to keras.applications).
_register("mobilenet_v3_large", LARGE, 1280, False, "MobileNetV3Large",
          (_fig(1.0, 217, 5.4, KERAS_TABLE), _fig(0.75, 155, 4.0, PAPER + " Table 3")),
          "SE + hard-swish, NAS-searched")
_register("mobilenet_v3_small", SMALL, 1024, False, "MobileNetV3Small",
          (_fig(1.0, 56, 2.5, PAPER + " Table 4"),
           _fig(0.75, 44, 2.0, PAPER + " Table 4 (whole millions)", tolerance=0.03)),
          "SE + hard-swish, NAS-searched")
_register("mobilenet_v3_large_minimalistic", LARGE, 1280, True, "MobileNetV3Large",
          (_fig(1.0, 209, 3.9, KERAS_TABLE),), "no SE, ReLU, 3x3 only")
_register("mobilenet_v3_small_minimalistic", SMALL, 1024, True, "MobileNetV3Small",
          (_fig(1.0, None, 2.0, "keras.applications (params only)"),),
          "no SE, ReLU, 3x3 only")
