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


def layers_in(name: str) -> tuple[str, ...]:
    """The Keras layer names in one tensor or node name, in order, without repeats."""
    found: list[str] = []
    for part in name.split(";"):
        scopes = [c for c in part.split("/") if c][:-1]
        if not scopes:
            continue
        model = _base(scopes[0])
        while len(scopes) > 1 and _base(scopes[0]) == model:
            scopes = scopes[1:]
        found.append(_base(scopes[0]))
    return tuple(dict.fromkeys(found))
