"""Keras layer names in the tensor and node names converters write.

TensorFlow's converters name tensors and nodes by the Keras layer's name scope:
``model_1/model_1/stage2.unit1.expand.act_1/Relu`` (TFLite; the model's scope comes
twice when the model is wrapped for a batch-1 signature) or
``model_1/stage2.unit1.dw.conv_1/depthwise`` (tf2onnx), with one ``;``-separated part
per TF op the converter fused into one. In each part the last path component is the TF
op; of the scopes before it, the model's own (the first, and its repeats) is dropped
and the next is the layer, less the ``_N`` suffix its name scope got (later scopes are
the layer's inner ops, like batch norm's ``batchnorm``).
"""

from __future__ import annotations

import re

_SCOPE_SUFFIX = re.compile(r"_\d+$")
_TENSOR_SUFFIX = re.compile(r"(:\d+)?(_nchwc)?$")  # output index; onnxruntime's NCHWc copy


def _base(component: str) -> str:
    return _SCOPE_SUFFIX.sub("", _TENSOR_SUFFIX.sub("", component))


def scopes_of(name: str) -> list[list[str]]:
    """The name scopes (``_N`` suffixes removed) of each ``;``-part of a name."""
    return [[_base(c) for c in part.split("/") if c][:-1] for part in name.split(";")]


def layers_in(name: str, *, model_scopes: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The Keras layer names in one tensor or node name, in order, without repeats.
    ``model_scopes``: leading scopes known to be models, not layers (a model nested in
    another, :func:`common_scopes`); by default the first scope and its repeats."""
    found: list[str] = []
    for scopes in scopes_of(name):
        if not scopes:
            continue
        model = scopes[0]
        if model_scopes and tuple(scopes[:len(model_scopes)]) == model_scopes:
            scopes, model = scopes[len(model_scopes):] or scopes[-1:], model_scopes[-1]
        while len(scopes) > 1 and scopes[0] == model:
            scopes = scopes[1:]  # the model's own scope, repeated by the TFLite converter
        found.append(scopes[0])
    return tuple(dict.fromkeys(found))


def common_scopes(names: list[str]) -> tuple[str, ...]:
    """The leading scopes every scoped name shares, leaving one at least: the model (and
    any model nested in it), which is no layer."""
    parts = [s for name in names for s in scopes_of(name) if len(s) > 1]
    if not parts:
        return ()
    common = min(parts, key=len)[:-1]
    for scopes in parts:
        n = 0
        while n < len(common) and n < len(scopes) - 1 and scopes[n] == common[n]:
            n += 1
        common = common[:n]
    return tuple(common)
