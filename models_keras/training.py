"""Small training helpers for tests and benchmarks: a real dataset that ships inside a
package (scikit-learn's handwritten digits) and batch-norm recalibration."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np


def digits_pixels() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 handwritten digits (in its wheel, nothing downloaded) as
    32x32 RGB uint8 images (8x8 upsampled 4x, grey repeated), and their labels."""
    from sklearn.datasets import load_digits  # the test extra: not a user dependency

    digits = load_digits()
    pixels = (digits.images / 16 * 255).round().astype(np.uint8)
    pixels = np.repeat(np.repeat(pixels, 4, axis=1), 4, axis=2)[..., None].repeat(3, axis=-1)
    return pixels, digits.target


def recalibrate_batch_norm(model: Any, x: np.ndarray) -> None:
    """Set every BN layer's moving statistics to the statistics of ``x`` (one forward
    pass with momentum 0): after a short training, momentum 0.999 has not settled."""
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    model(x, training=True)
    for bn, momentum in zip(bns, saved):
        bn.momentum = momentum


def trained_scales(model: Any, x: np.ndarray, *, logit_std: float = 4.0) -> None:
    """Give fresh weights the activation and output scales of a trained network, for
    tests and benchmarks of speed (not accuracy): batch-norm statistics from ``x``
    (the initial ones shrink activations layer by layer until int8 kernels refuse
    their tiny scales), and the last dense layer scaled so its logits on ``x`` spread
    by ``logit_std`` (fresh logits are near-uniform, which int8 rounds to a constant)."""
    recalibrate_batch_norm(model, x)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    if not dense:
        return
    last = dense[-1]
    logits = keras.Model(model.input, last.output)(x, training=False)
    spread = float(np.std(np.asarray(logits)))
    if spread > 0:
        kernel, *rest = last.get_weights()
        last.set_weights([kernel * (logit_std / spread), *[w * (logit_std / spread)
                                                           for w in rest]])
