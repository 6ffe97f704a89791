"""MixNet's MACs against an independent count: the reference block strings of MixNet-S
and -M (Tan & Le 2019, the TF reference's ``r{repeats}_k{kernels}_a{expand groups}_
p{project groups}_s{stride}_e{expansion}_i{in}_o{out}_se{ratio}`` notation), decoded and
counted here with closed forms, convolution and dense MACs layer by layer, without
Keras. The Keras zoo must agree exactly; the paper's 256/360/565M use another
convention (see the README)."""

from __future__ import annotations

import math
import re

import pytest

from models_keras.analysis import analyze_model
from models_keras.registry import get_model_spec

MIXNET_S = (
    "r1_k3_a1_p1_s11_e1_i16_o16", "r1_k3_a1.1_p1.1_s22_e6_i16_o24",
    "r1_k3_a1.1_p1.1_s11_e3_i24_o24", "r1_k3.5.7_a1_p1_s22_e6_i24_o40_se0.5_sw",
    "r3_k3.5_a1.1_p1.1_s11_e6_i40_o40_se0.5_sw", "r1_k3.5.7_a1_p1.1_s22_e6_i40_o80_se0.25_sw",
    "r2_k3.5_a1_p1.1_s11_e6_i80_o80_se0.25_sw", "r1_k3.5.7_a1.1_p1.1_s11_e6_i80_o120_se0.5_sw",
    "r2_k3.5.7.9_a1.1_p1.1_s11_e3_i120_o120_se0.5_sw",
    "r1_k3.5.7.9.11_a1_p1_s22_e6_i120_o200_se0.5_sw",
    "r2_k3.5.7.9_a1_p1.1_s11_e6_i200_o200_se0.5_sw",
)
MIXNET_M = (
    "r1_k3_a1_p1_s11_e1_i24_o24", "r1_k3.5.7_a1.1_p1.1_s22_e6_i24_o32",
    "r1_k3_a1.1_p1.1_s11_e3_i32_o32", "r1_k3.5.7.9_a1_p1_s22_e6_i32_o40_se0.5_sw",
    "r3_k3.5_a1.1_p1.1_s11_e6_i40_o40_se0.5_sw", "r1_k3.5.7_a1_p1_s22_e6_i40_o80_se0.25_sw",
    "r3_k3.5.7.9_a1.1_p1.1_s11_e6_i80_o80_se0.25_sw", "r1_k3_a1_p1_s11_e6_i80_o120_se0.5_sw",
    "r3_k3.5.7.9_a1.1_p1.1_s11_e3_i120_o120_se0.5_sw",
    "r1_k3.5.7.9_a1_p1_s22_e6_i120_o200_se0.5_sw",
    "r3_k3.5.7.9_a1_p1.1_s11_e6_i200_o200_se0.5_sw",
)
# name -> (block strings, stem channels, width multiplier)
NETWORKS = {"mixnet_s": (MIXNET_S, 16, 1.0), "mixnet_m": (MIXNET_M, 24, 1.0),
            "mixnet_l": (MIXNET_M, 24, 1.3)}
HEAD, CLASSES, RESOLUTION = 1536, 1000, 224


def _groups(field: str) -> int:
    """``a1`` -> 1 group, ``a1.1`` -> 2 groups (the reference lists one 1 per group)."""
    return len(field.split("."))


def _round(channels: float) -> int:
    """The reference's channel rounding: to a multiple of 8, never 10% below."""
    rounded = max(8, int(channels + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * channels else rounded


def _block_macs(block: str, size: int, width: float) -> tuple[int, int]:
    """(MACs of the block's repeats, output size) for one block string at input size."""
    f = dict(re.match(r"([a-z]+)(.*)", part).groups() for part in block.split("_"))
    kernels = [int(k) for k in f["k"].split(".")]
    cin, cout = _round(int(f["i"]) * width), _round(int(f["o"]) * width)
    total = 0
    for repeat in range(int(f["r"])):
        stride = int(f["s"][0]) if repeat == 0 else 1
        inner = cin * int(f["e"])
        out = math.ceil(size / stride)
        if int(f["e"]) != 1:
            total += size * size * cin * inner // _groups(f["a"])  # grouped 1x1 expansion
        splits = [inner // len(kernels)] * len(kernels)
        splits[0] += inner - sum(splits)
        total += sum(out * out * k * k * c for k, c in zip(kernels, splits))  # MDConv
        if "se" in f:
            squeeze = max(1, int(cin * float(f["se"])))
            total += 2 * inner * squeeze  # reduce + expand on the pooled vector
        total += out * out * inner * cout // _groups(f["p"])  # grouped 1x1 projection
        cin, size = cout, out
    return total, size


def independent_macs(name: str) -> int:
    blocks, stem, width = NETWORKS[name]
    size = RESOLUTION // 2
    total = size * size * 3 * 3 * 3 * _round(stem * width)  # stem 3x3 stride 2
    for block in blocks:
        macs, size = _block_macs(block, size, width)
        total += macs
    last = _round(int(re.search(r"_o(\d+)", blocks[-1]).group(1)) * width)
    return total + size * size * last * HEAD + HEAD * CLASSES  # head 1x1, classifier


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_mixnet_macs_equal_the_independent_count(name: str) -> None:
    ours = analyze_model(get_model_spec(name).build()).macs
    assert ours == independent_macs(name)
