"""Unstructured magnitude pruning: the smallest weights of each prunable kernel set to
zero, and kept at zero while the model is fine-tuned.

One shot, layer by layer: in every kernel the ``sparsity`` share of weights with the
smallest absolute value is zeroed (Han et al., "Learning both Weights and Connections
for Efficient Neural Networks", NeurIPS 2015), then a mask holds them at zero through
every training step. Sparse kernels only pay where a runtime has sparse kernels:
TFLite stores them in its sparse tensor encoding, and XNNPACK runs 1x1 convolutions
sparse on ARM when enough of their weights are zero (Elsen et al., "Fast Sparse
ConvNets", CVPR 2020).

Prunable: the kernel of every ``Dense`` layer and of every ``Conv2D`` with one group
(the pointwise kernel of a ``SeparableConv2D``), except those reading 3 channels or
fewer (the stem: few weights, and XNNPACK's sparse subgraph starts from a dense one).
Depthwise kernels hold few weights and stay dense.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from mobilectl.core.errors import UserError

#: Input channels at or below which a convolution counts as the stem and stays dense.
STEM_CHANNELS = 3


@dataclass(frozen=True)
class Mask:
    """Which weights of one kernel are kept (``True``) and which are held at zero."""

    layer: str
    weight: str  # the layer's attribute: "kernel" or "pointwise_kernel"
    keep: np.ndarray

    @property
    def zeros(self) -> int:
        return int(self.keep.size - np.count_nonzero(self.keep))


def _kernels(model: Any) -> Iterator[tuple[Any, str]]:
    """(layer, weight attribute) of every prunable kernel, in layer order."""
    import keras  # heavy: only when a model is pruned

    for layer in model.layers:
        if isinstance(layer, keras.layers.SeparableConv2D):
            yield layer, "pointwise_kernel"
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            continue
        elif isinstance(layer, keras.layers.Conv2D) and layer.groups == 1:
            if layer.kernel.shape[-2] > STEM_CHANNELS:
                yield layer, "kernel"
        elif isinstance(layer, keras.layers.Dense):
            yield layer, "kernel"


def check_sparsity(sparsity: float) -> None:
    """Raise UserError unless ``sparsity`` is a share strictly between 0 and 1."""
    if not 0 < sparsity < 1:
        raise UserError(f"--sparsity {sparsity:g} is not allowed: a share of weights "
                        "between 0 and 1 (e.g. 0.75)")


def magnitude_masks(model: Any, *, sparsity: float) -> tuple[Mask, ...]:
    """Per kernel, keep all but the ``sparsity`` share of weights smallest in magnitude
    (ties broken by position, so the masks depend only on the weights).

    Raises:
        UserError: ``sparsity`` outside (0, 1), or a model with no prunable kernel.
    """
    check_sparsity(sparsity)
    masks = []
    for layer, weight in _kernels(model):
        values = np.abs(np.asarray(getattr(layer, weight).numpy())).ravel()
        order = np.argsort(values, kind="stable")
        keep = np.ones(values.size, dtype=bool)
        keep[order[:int(round(sparsity * values.size))]] = False
        masks.append(Mask(layer.name, weight, keep.reshape(getattr(layer, weight).shape)))
    if not masks:
        raise UserError(f"{model.name} has no prunable kernel (no Dense layer and no "
                        f"convolution reading more than {STEM_CHANNELS} channels)")
    return tuple(masks)


def apply_masks(model: Any, masks: tuple[Mask, ...]) -> None:
    """Set every masked weight of ``model`` to zero, in place."""
    for mask in masks:
        variable = getattr(model.get_layer(mask.layer), mask.weight)
        variable.assign(np.where(mask.keep, variable.numpy(), 0).astype(variable.dtype))


def mask_keeper(masks: tuple[Mask, ...]) -> Any:
    """A Keras callback that re-applies ``masks`` after every training step, so the
    optimizer's updates never revive a pruned weight."""
    import keras  # heavy: only when fine-tuning

    class _KeepMasks(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            apply_masks(self.model, masks)

    return _KeepMasks()


def zero_share(model: Any) -> float:
    """The share of zero weights among ``model``'s prunable kernels."""
    sizes = zeros = 0
    for layer, weight in _kernels(model):
        values = np.asarray(getattr(layer, weight).numpy())
        sizes += values.size
        zeros += int(values.size - np.count_nonzero(values))
    return zeros / sizes if sizes else 0.0
