"""EfficientNet-B0 (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for
Convolutional Neural Networks", arXiv:1905.11946, Table 1).

The NAS baseline of the EfficientNet family: MBConv units with SE everywhere and
swish activations. Scaled variants (B1-B7) are left to the compound-scaling knobs of
a later version.
"""

from __future__ import annotations

import keras

from models_keras.blocks import MBConvRow, common_knobs, keras_twin, mbconv_network
from models_keras.registry import PaperFigure, register_model

PAPER = "Tan & Le 2019, EfficientNet, arXiv:1905.11946 (Tables 1-2)"

TABLE: tuple[MBConvRow, ...] = (
    # t, c,   n, s, k, se
    (1, 16,  1, 1, 3, 0.25),
    (6, 24,  2, 2, 3, 0.25),
    (6, 40,  2, 2, 5, 0.25),
    (6, 80,  3, 2, 3, 0.25),
    (6, 112, 3, 1, 5, 0.25),
    (6, 192, 4, 2, 5, 0.25),
    (6, 320, 1, 1, 3, 0.25),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


@register_model(
    name="efficientnet_b0", family="efficientnet", knobs=common_knobs(resolution=224),
    paper=PAPER,
    # The paper gives 0.39B (two significant digits): 3%.
    figures=(PaperFigure((), 390, 5.3, macs_tolerance=0.03, source=PAPER + " Table 2"),),
    keras_twin=keras_twin("EfficientNetB0"), description="MBConv + SE, swish",
)
def efficientnet_b0(
    *, resolution: int, num_classes: int, include_top: bool, dropout: float,
) -> keras.Model:
    """Build EfficientNet-B0 (keras.applications' input normalisation layers aside)."""
    return mbconv_network(
        TABLE, name="efficientnet_b0", act="swish", stem=STEM_CHANNELS, head=HEAD_CHANNELS,
        resolution=resolution, num_classes=num_classes, include_top=include_top,
        dropout=dropout,
    )
