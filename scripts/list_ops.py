"""List the TFLite and ONNX op types of one small model per zoo family.

Proof that the zoo converts with builtin ops only (no Flex, no custom ops). Prints a
Markdown table; `--json` for scripts. Usage: python scripts/list_ops.py [--json]
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from mobilectl.core.tfenv import import_quietly

    import_quietly()
    from exporter import onnx as onnx_export
    from exporter import tflite as tflite_export
    from mobilectl.core.types import Layout
    from models_keras.registry import family_representatives

    rows = []
    for spec in sorted(family_representatives(), key=lambda spec: spec.family):
        family = spec.family
        # as exported: NCHW ONNX, at 64 px at least (the last stage 2x2, as at 224)
        model = spec.build(resolution=max(64, spec.test_resolution), num_classes=10)
        tflite_ops = sorted(set(tflite_export.op_types(tflite_export.convert(model))))
        onnx_ops = sorted({op for _, op in onnx_export.op_types(
            onnx_export.convert(model, layout=Layout.NCHW))})
        rows.append({"family": family, "model": spec.name, "tflite": tflite_ops, "onnx": onnx_ops})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print("| family (model) | TFLite ops | ONNX ops |\n|---|---|---|")
    for row in rows:
        print(f"| {row['family']} (`{row['model']}`) | {', '.join(row['tflite'])} | "
              f"{', '.join(row['onnx'])} |")


if __name__ == "__main__":
    main()
