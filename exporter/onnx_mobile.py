"""How an ONNX artifact would run with onnxruntime's mobile execution providers,
as onnxruntime's own usability checker estimates it (the code behind
``python -m onnxruntime.tools.check_onnx_model_mobile_usability``): the graph is
optimised to onnxruntime's basic level first, as the checker's command does, then
partitioned by each EP's list of supported ops. Recorded in the manifest, so a
lean-graph change that splits a model into more NNAPI or CoreML partitions shows."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mobilectl.core.manifest import MobileVerdict
from mobilectl.core.tfenv import third_party_output
from mobilectl.core.types import EpFit, MobileEp

#: the checker's op list for each CoreML model format (NNAPI has its own function)
_COREML_LISTS = {MobileEp.COREML_NEURALNETWORK: "coreml_supported_neuralnetwork_ops.md",
                 MobileEp.COREML_MLPROGRAM: "coreml_supported_mlprogram_ops.md"}


def _checks() -> dict[MobileEp, Callable[[Any], Any]]:
    from onnxruntime.tools.mobile_helpers import usability_checker as checker  # heavy

    table: dict[MobileEp, Callable[[Any], Any]] = {
        MobileEp.NNAPI: lambda model: checker.check_nnapi_partitions(model, True)}
    for ep, listing in _COREML_LISTS.items():
        table[ep] = lambda model, listing=listing: checker.check_coreml_partitions(
            model, True, listing)
    return table


def usability(data: bytes) -> tuple[MobileVerdict, ...]:
    """The checker's partitions, supported nodes and verdict for each mobile EP, with
    fixed input sizes (our artifacts have a fixed batch-1 input)."""
    import onnx  # heavy
    from onnxruntime.tools.onnx_model_utils import optimize_model

    with tempfile.TemporaryDirectory() as folder, third_party_output():
        source, optimised = Path(folder) / "model.onnx", Path(folder) / "optimised.onnx"
        source.write_bytes(data)
        optimize_model(source, optimised)
        model = onnx.shape_inference.infer_shapes(onnx.load(str(optimised)), strict_mode=True)
        infos = {ep: check(model) for ep, check in _checks().items()}
    return tuple(MobileVerdict(ep, info.num_partitions, info.num_supported_nodes,
                               info.num_nodes, EpFit(info.suitability().name.lower()))
                 for ep, info in infos.items())
