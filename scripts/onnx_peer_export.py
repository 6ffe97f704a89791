"""Export the native PyTorch peers of our ONNX graphs (run with a Python that has
torch, torchvision and timm: the ``bench`` extra, never a runtime dependency).

    python scripts/onnx_peer_export.py OUT_DIR

Writes ``OUT_DIR/<our model name>.onnx`` for each peer in :data:`PEERS`: freshly
initialised weights (no download), eval mode, a fixed 1x3x224x224 input,
``torch.onnx.export`` with opset 17 (the TorchScript exporter), the export users of
those libraries get.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: our registry name -> (library, its model name)
PEERS = {
    "mobilenet_v2": ("torchvision", "mobilenet_v2"),
    "mobilenet_v3_large": ("torchvision", "mobilenet_v3_large"),
    "shufflenet_v2": ("torchvision", "shufflenet_v2_x1_0"),
    "squeezenet1_1": ("torchvision", "squeezenet1_1"),
    "efficientnet_b0": ("torchvision", "efficientnet_b0"),
    "mnasnet_a1": ("timm", "semnasnet_100"),
    "mixnet_s": ("timm", "mixnet_s"),
}


def build(library: str, name: str):
    if library == "timm":
        import timm

        return timm.create_model(name, pretrained=False)
    import torchvision

    return getattr(torchvision.models, name)(weights=None)


def main() -> None:
    import torch

    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    for ours, (library, name) in PEERS.items():
        model = build(library, name).eval()
        x = torch.zeros(1, 3, 224, 224)
        torch.onnx.export(model, (x,), str(out / f"{ours}.onnx"), opset_version=17,
                          input_names=["input"], output_names=["output"], dynamo=False)
        print(f"{ours}: {library} {name}", flush=True)


if __name__ == "__main__":
    main()
