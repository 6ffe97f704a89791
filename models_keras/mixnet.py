"""MixNet S/M/L (Tan & Le 2019, "MixConv: Mixed Depthwise Convolutional Kernels",
arXiv:1907.09595, Figures 5-6).

MBConv units whose depthwise layer is an MDConv: the channels are split into groups,
each convolved with its own kernel size (3x3 ... 11x11), and concatenated. Some
units also group their 1x1 expansion and projection. MixNet-L is MixNet-M widened
by 1.3.
"""

from __future__ import annotations

import keras

from models_keras.blocks import (
    classifier, common_knobs, conv_bn, finish, image_input, inverted_residual, make_divisible,
    se_width,
)
from models_keras.registry import PaperFigure, register_model

PAPER = "Tan & Le 2019, MixConv/MixNet, arXiv:1907.09595 (Table 2, Figures 5-6)"

# n: units, k: depthwise kernels (one per channel group), a/p: groups of the 1x1
# expansion/projection, s: first stride, e: expansion, c: output channels,
# se: SE ratio of the input channels, act: activation.
Row = tuple[int, tuple[int, ...], int, int, int, int, int, float, str]
SMALL: tuple[Row, ...] = (
    # n, k,                 a, p, s, e, c,   se,   act
    (1, (3,),               1, 1, 1, 1, 16,  0,    "relu"),
    (1, (3,),               2, 2, 2, 6, 24,  0,    "relu"),
    (1, (3,),               2, 2, 1, 3, 24,  0,    "relu"),
    (1, (3, 5, 7),          1, 1, 2, 6, 40,  0.5,  "swish"),
    (3, (3, 5),             2, 2, 1, 6, 40,  0.5,  "swish"),
    (1, (3, 5, 7),          1, 2, 2, 6, 80,  0.25, "swish"),
    (2, (3, 5),             1, 2, 1, 6, 80,  0.25, "swish"),
    (1, (3, 5, 7),          2, 2, 1, 6, 120, 0.5,  "swish"),
    (2, (3, 5, 7, 9),       2, 2, 1, 3, 120, 0.5,  "swish"),
    (1, (3, 5, 7, 9, 11),   1, 1, 2, 6, 200, 0.5,  "swish"),
    (2, (3, 5, 7, 9),       1, 2, 1, 6, 200, 0.5,  "swish"),
)
MEDIUM: tuple[Row, ...] = (
    (1, (3,),               1, 1, 1, 1, 24,  0,    "relu"),
    (1, (3, 5, 7),          2, 2, 2, 6, 32,  0,    "relu"),
    (1, (3,),               2, 2, 1, 3, 32,  0,    "relu"),
    (1, (3, 5, 7, 9),       1, 1, 2, 6, 40,  0.5,  "swish"),
    (3, (3, 5),             2, 2, 1, 6, 40,  0.5,  "swish"),
    (1, (3, 5, 7),          1, 1, 2, 6, 80,  0.25, "swish"),
    (3, (3, 5, 7, 9),       2, 2, 1, 6, 80,  0.25, "swish"),
    (1, (3,),               1, 1, 1, 6, 120, 0.5,  "swish"),
    (3, (3, 5, 7, 9),       2, 2, 1, 3, 120, 0.5,  "swish"),
    (1, (3, 5, 7, 9),       1, 1, 2, 6, 200, 0.5,  "swish"),
    (3, (3, 5, 7, 9),       1, 2, 1, 6, 200, 0.5,  "swish"),
)
HEAD_CHANNELS = 1536


def mixnet(table: tuple[Row, ...], *, name: str, stem: int, width: float, resolution: int,
           num_classes: int, include_top: bool, dropout: float) -> keras.Model:
    """Build a MixNet from its table; ``width`` multiplies every channel count but the head."""
    inputs = image_input(resolution)
    x = conv_bn(inputs, make_divisible(stem * width), 3, strides=2, name="stem")
    for stage, (n, kernels, a, p, s, e, c, se, act) in enumerate(table, start=1):
        for unit in range(n):
            in_channels = x.shape[-1]
            x = inverted_residual(
                x, expanded=in_channels * e, filters=make_divisible(c * width),
                strides=s if unit == 0 else 1, kernel=kernels, act=act,
                se_channels=se_width(in_channels, se), se_act=act,
                se_gate="sigmoid", expand_groups=a, project_groups=p,
                name=f"stage{stage}.unit{unit + 1}",
            )
    x = conv_bn(x, HEAD_CHANNELS, 1, name="head")
    if include_top:
        x = classifier(x, num_classes=num_classes, dropout=dropout)
    return finish(inputs, x, name=name)


def _register(name: str, table: tuple[Row, ...], stem: int, width: float,
              params: float) -> None:
    def build(**knobs: object) -> keras.Model:
        return mixnet(table, name=name, stem=stem, width=width, **knobs)

    build.__doc__ = f"Build {name}."
    register_model(name=name, family="mixnet", knobs=common_knobs(resolution=224),
                   paper=PAPER,
                   figures=(PaperFigure((), None, params, source=PAPER + " Table 2 (params)"),),
                   description="MDConv: mixed depthwise kernels")(build)


# Params match Table 2 (4.1/5.0/7.3M). MACs (239/339/555M) equal an independent count
# of the reference block strings (tests/test_mixnet_count.py); the paper's
# 256/360/565M follow another, unstated convention, so no paper MACs are pinned.
_register("mixnet_s", SMALL, 16, 1.0, 4.1)
_register("mixnet_m", MEDIUM, 24, 1.0, 5.0)
_register("mixnet_l", MEDIUM, 24, 1.3, 7.3)
