"""ESPNetv2 (Mehta, Rastegari, Shapiro & Hajishirzi 2019, "ESPNetv2: A Light-weight,
Power Efficient, and General Purpose Convolutional Neural Network", arXiv:1811.11431).

The EESP unit reduces with a group point-wise conv, splits into K parallel depth-wise
*dilated* 3x3 convs (growing dilation, a spatial pyramid), fuses them hierarchically
(each branch adds the previous one, against gridding artifacts), concatenates and
merges with a second group point-wise conv, plus a residual. The strided unit
concatenates an average-pooled copy of its input and adds a projection of the
down-sampled input image ("input reinforcement"). PReLU throughout. The scale ``s``
(our ``width_multiplier``, 0.5 to 2.0) widens every level.
"""

from __future__ import annotations

import math

import keras
from keras import layers

from models_keras.blocks import (activation, bn_act, classifier, common_knobs, conv_bn,
                                 depthwise_bn, finish, image_input)
from models_keras.layers import StridedDilatedDepthwiseConv2D
from models_keras.registry import Knob, PaperFigure, register_model

PAPER = "Mehta et al. 2019, ESPNetv2, arXiv:1811.11431"
REFERENCE = "ESPNetv2 reference repository, ImageNet results table"

BRANCHES = 4  # K, parallel branches of every EESP unit
BASE = 32
ACT = "prelu"
# level: (EESP units after the down-sampler, receptive-field limit of the down-sampler,
# of the units). Level 2 is a down-sampler only; reinforcement: levels 2-4.
LEVELS: tuple[tuple[int, int, int], ...] = ((0, 13, 11), (3, 11, 9), (7, 9, 7), (3, 7, 5))
REINFORCED_LEVELS = 3

KNOBS = (
    Knob("width_multiplier", float, 1.0, minimum=0.5, maximum=2.0, short="w",
         help="the paper's scale s, widening every level (0.5 to 2.0)"),
    *common_knobs(resolution=224, min_resolution=32),
)
# The reference table counts the convolutions only; its figures plus the classifier's
# head x 1000 MACs are what we count (params include every layer either way).
FIGURES = tuple(
    PaperFigure((("width_multiplier", s),), conv_macs + head * 1000 / 1e6, params,
                macs_tolerance=0.01, source=f"{PAPER}; {REFERENCE} (+ classifier MACs)")
    for s, conv_macs, params, head in ((0.5, 28.37, 1.24, 1024), (1.0, 85.72, 1.67, 1024),
                                       (1.25, 123.39, 1.96, 1024), (1.5, 168.6, 2.31, 1024),
                                       (2.0, 284.8, 3.49, 1280))
)


def level_channels(scale: float) -> tuple[int, ...]:
    """Output channels of levels 1-5 and the head: level 1 is ``32*s`` rounded up to a
    multiple of K (at most 32), levels 2-5 double ``32*s`` each time."""
    base = math.ceil(int(BASE * scale) / BRANCHES) * BRANCHES
    head = 1024 if scale <= 1.5 else 1280
    return (min(base, BASE), *(base * 2 ** i for i in range(1, 5)), head)


def dilations(receptive_limit: int) -> tuple[int, ...]:
    """Dilation of each branch: kernels 3, 5, 7, ... (effective), capped at the limit
    (beyond it a plain 3x3), sorted ascending."""
    sizes = sorted(k if k <= receptive_limit else 3 for k in range(3, 3 + 2 * BRANCHES, 2))
    return tuple((k - 1) // 2 for k in sizes)


def eesp(x: keras.KerasTensor, out: int, *, strides: int, receptive_limit: int,
         name: str) -> keras.KerasTensor:
    """EESP unit: ``name.reduce`` (group 1x1), ``name.branchN`` (dilated depthwise),
    ``name.hffN`` (hierarchical fusion), ``name.concat``, ``name.merge`` (group 1x1),
    and for stride 1 ``name.add`` + ``name.act``."""
    width = out // BRANCHES
    y = conv_bn(x, width, 1, groups=BRANCHES, act=ACT, name=f"{name}.reduce")
    branches: list[keras.KerasTensor] = []
    for i, rate in enumerate(dilations(receptive_limit), start=1):
        if strides == 1:
            b = layers.DepthwiseConv2D(3, padding="same", dilation_rate=rate, use_bias=False,
                                       name=f"{name}.branch{i}")(y)
        else:
            b = StridedDilatedDepthwiseConv2D(3, padding="same", dilation_rate=rate,
                                              use_bias=False, subsample=strides,
                                              name=f"{name}.branch{i}")(y)
        if branches:
            b = layers.Add(name=f"{name}.hff{i}")([branches[-1], b])
        branches.append(b)
    y = layers.Concatenate(name=f"{name}.concat")(branches)
    y = bn_act(y, ACT, name=f"{name}.concat")
    y = conv_bn(y, out, 1, groups=BRANCHES, act=None, name=f"{name}.merge")
    if strides == 2:
        return y
    y = layers.Add(name=f"{name}.add")([x, y])
    return activation(y, ACT, name=f"{name}.act")


def avg_pool(x: keras.KerasTensor, *, name: str) -> keras.KerasTensor:
    """3x3 stride-2 average pool with one pixel of zero padding counted in the mean
    (the reference's pooling), so outputs stay centred like the strided convs."""
    x = layers.ZeroPadding2D(1, name=f"{name}.pad")(x)
    return layers.AveragePooling2D(3, strides=2, name=name)(x)


def down_sampler(x: keras.KerasTensor, out: int, *, receptive_limit: int,
                 image: keras.KerasTensor | None, name: str) -> keras.KerasTensor:
    """Strided EESP (Fig. 2): ``name.pool`` | ``name.eesp`` concatenated, plus the
    reinforcement ``name.reinf`` of the down-sampled image when given, then PReLU."""
    pooled = avg_pool(x, name=f"{name}.pool")
    y = eesp(x, out - x.shape[-1], strides=2, receptive_limit=receptive_limit,
             name=f"{name}.eesp")
    y = layers.Concatenate(name=f"{name}.concat")([pooled, y])
    if image is not None:
        r = conv_bn(image, 3, 3, act=ACT, name=f"{name}.reinf1")
        r = conv_bn(r, out, 1, act=None, name=f"{name}.reinf2")
        y = layers.Add(name=f"{name}.reinf")([y, r])
    return activation(y, ACT, name=f"{name}.act")


@register_model(
    name="espnetv2", family="espnetv2", knobs=KNOBS, paper=PAPER, figures=FIGURES,
    description="EESP: group 1x1 + dilated depthwise pyramid", test_resolution=32,
)
def espnetv2(*, width_multiplier: float, resolution: int, num_classes: int,
             include_top: bool, dropout: float) -> keras.Model:
    """Build ESPNetv2 for classification at scale ``width_multiplier``."""
    channels = level_channels(width_multiplier)
    inputs = image_input(resolution)
    x = conv_bn(inputs, channels[0], 3, strides=2, act=ACT, name="stem")
    image = avg_pool(inputs, name="stem.image_pool")
    for level, (units, down_limit, unit_limit) in enumerate(LEVELS, start=2):
        reinforced = level - 2 < REINFORCED_LEVELS
        if reinforced:
            image = avg_pool(image, name=f"stage{level}.image_pool")
        x = down_sampler(x, channels[level - 1], receptive_limit=down_limit,
                         image=image if reinforced else None, name=f"stage{level}.down")
        for unit in range(1, units + 1):
            x = eesp(x, channels[level - 1], strides=1, receptive_limit=unit_limit,
                     name=f"stage{level}.unit{unit}")
    x = depthwise_bn(x, 3, act=ACT, name="head.dw")
    x = conv_bn(x, channels[5], 1, groups=BRANCHES, act=ACT, name="head.pw")
    if include_top:
        x = classifier(x, num_classes=num_classes, dropout=dropout)
    return finish(inputs, x, name="espnetv2")
