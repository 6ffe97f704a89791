"""MnasNet-A1 (Tan et al. 2019, "MnasNet: Platform-Aware Neural Architecture Search
for Mobile", arXiv:1807.11626, Figure 7).

The searched network mixes 3x3 and 5x5 MBConv units, expansion 3 or 6, with
squeeze-and-excitation in three stages; the first unit is a separable conv.
"""

from __future__ import annotations

import keras

from models_keras.blocks import MBConvRow, common_knobs, mbconv_network
from models_keras.registry import PaperFigure, register_model

PAPER = "Tan et al. 2019, MnasNet, arXiv:1807.11626 (Figure 7, Table 1)"

TABLE: tuple[MBConvRow, ...] = (
    # t, c,   n, s, k, se
    (1, 16,  1, 1, 3, 0),      # SepConv 3x3
    (6, 24,  2, 2, 3, 0),
    (3, 40,  3, 2, 5, 0.25),
    (6, 80,  4, 2, 3, 0),
    (6, 112, 2, 1, 3, 0.25),
    (6, 160, 3, 2, 5, 0.25),
    (6, 320, 1, 1, 3, 0),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


@register_model(
    name="mnasnet_a1", family="mnasnet", knobs=common_knobs(resolution=224), paper=PAPER,
    figures=(PaperFigure((), 312, 3.9, source=PAPER + " Table 1"),),
    description="platform-aware NAS, MBConv + SE",
)
def mnasnet_a1(
    *, resolution: int, num_classes: int, include_top: bool, dropout: float,
) -> keras.Model:
    """Build MnasNet-A1 (ReLU throughout)."""
    return mbconv_network(
        TABLE, name="mnasnet_a1", act="relu", stem=STEM_CHANNELS, head=HEAD_CHANNELS,
        resolution=resolution, num_classes=num_classes, include_top=include_top,
        dropout=dropout,
    )
