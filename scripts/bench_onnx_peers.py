"""Our ONNX graphs against native PyTorch exports of the same architectures.

    python scripts/bench_onnx_peers.py [--torch-python PYTHON] [--repeats 5] [--runs 20]

The peers (torchvision's and timm's models, ``torch.onnx.export``, opset 17) are
exported by ``scripts/onnx_peer_export.py`` run with ``--torch-python`` (a Python with
the ``bench`` extra: torch, torchvision, timm; default: this one). Ours come from
``mobilectl export --format onnx`` (NCHW, lean passes). Both at 224x224 with fresh
weights, fp32 and int8 (both quantized by our int8 recipe for this host: QDQ,
per-channel int8 weights, uint8 activations, the same 16 random calibration inputs).
Node counts of the files as written; latency with onnxruntime at 1 and 2 threads,
interleaved (every repetition runs every file once), medians with their 95% bootstrap intervals.

Writes ``bench/onnx_peers.json`` and ``bench/onnx_peers.md`` and puts the latter into
BENCHMARKS.md between its onnx-peers markers.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_common import STATS_NOTE, log, measure, ms_cell, publish, ratio_cell  # noqa: E402  (scripts/ helpers)
from onnx_peer_export import PEERS  # noqa: E402

START, END = "<!-- onnx-peers -->", "<!-- /onnx-peers -->"
COUNTED = ("Transpose", "Reshape", "Mul")


def export_ours(work: Path) -> list[dict[str, Any]]:
    from exporter.pipeline import ExportOptions, Thresholds, export

    lenient = Thresholds(min_cosine=0.0, min_sqnr_db=-100.0, min_top1=0.0, max_abs_error=1.0)
    files = []
    for name in PEERS:
        for precision in ("fp32", "int8"):
            log(f"export ours: {name} {precision}")
            result = export(name, knobs={}, out=work / "ours", options=ExportOptions(
                precision=precision, formats=("onnx",), calib_samples=16, thresholds=lenient))
            files.append({"model": name, "side": "ours", "precision": precision,
                          "path": work / "ours" / result.entries[0].path})
    return files


def export_peers(work: Path, python: str) -> list[dict[str, Any]]:
    import onnx

    from mobilectl.core.types import Layout
    from quant import onnx_quant

    log(f"export peers with {python}")
    subprocess.run([python, str(ROOT / "scripts" / "onnx_peer_export.py"), str(work / "peers")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    calibration = np.random.default_rng(0).uniform(-1, 1, (16, 224, 224, 3)).astype(np.float32)
    files = []
    for name in PEERS:
        path = work / "peers" / f"{name}.onnx"
        files.append({"model": name, "side": "peer", "precision": "fp32", "path": path})
        log(f"quantize peer: {name}")
        quantized = onnx_quant.quantize_int8(onnx.load(str(path)), calibration,
                                             layout=Layout.NCHW)
        int8 = path.with_name(f"{name}_int8.onnx")
        int8.write_bytes(quantized.SerializeToString())
        files.append({"model": name, "side": "peer", "precision": "int8", "path": int8})
    return files


def count_nodes(files: list[dict[str, Any]]) -> None:
    import onnx

    for f in files:
        types = collections.Counter(n.op_type for n in onnx.load(str(f["path"])).graph.node)
        f["nodes"] = sum(types.values())
        f.update({op: types.get(op, 0) for op in COUNTED})


def _find(files: list[dict[str, Any]], model: str, side: str, precision: str) -> dict[str, Any]:
    return next(f for f in files if (f["model"], f["side"], f["precision"]) == (model, side, precision))


def _median(f: dict[str, Any], threads: int) -> float:
    return statistics.median(f["ms"][threads])


def markdown(files: list[dict[str, Any]], s: dict[str, Any]) -> str:
    lines = ["## Our ONNX against native PyTorch exports", "",
             f"`python scripts/bench_onnx_peers.py` ({s['repeats']} interleaved repetitions, "
             f"each the median of {s['runs']} runs after 5 warm-up runs; " + STATS_NOTE + "; "
             f"{s['wall_time_s'] / 60:.1f} min). Peers: torchvision {s['torchvision']}, timm "
             f"{s['timm']}, torch {s['torch']} `torch.onnx.export` opset 17; onnxruntime, "
             "224x224, fresh weights. Nodes: ours / peer (fp32 files).", "",
             "| model | nodes | Transpose | Reshape | Mul | fp32 ours, 2 thr | fp32 peer, 2 thr "
             "| ours/peer 1 thr | ours/peer 2 thr |", "|---|---|---|---|---|---|---|---|---|"]
    for name, (library, peer_name) in PEERS.items():
        ours, peer = _find(files, name, "ours", "fp32"), _find(files, name, "peer", "fp32")
        counts = " | ".join(f"{ours[op]} / {peer[op]}" for op in ("nodes", *COUNTED))
        ratios = " | ".join(ratio_cell(ours["ms"][t], peer["ms"][t]) for t in (1, 2))
        lines.append(f"| {name} ({library} `{peer_name}`) | {counts} | {ms_cell(ours['ms'][2])} "
                     f"| {ms_cell(peer['ms'][2])} | {ratios} |")
    lines += ["", "int8 (the same recipe for both: QDQ, per-channel int8 weights, uint8 "
              "activations):", "",
              "| model | int8 ours, 2 thr | int8 peer, 2 thr | ours/peer 2 thr "
              "| ours fp32/int8 1 thr | ours fp32/int8 2 thr |", "|---|---|---|---|---|---|"]
    for name in PEERS:
        ours, peer = _find(files, name, "ours", "int8"), _find(files, name, "peer", "int8")
        fp32 = _find(files, name, "ours", "fp32")
        speedups = " | ".join(ratio_cell(fp32["ms"][t], ours["ms"][t], suffix="x")
                              for t in (1, 2))
        lines.append(f"| {name} | {ms_cell(ours['ms'][2])} | {ms_cell(peer['ms'][2])} "
                     f"| {ratio_cell(ours['ms'][2], peer['ms'][2])} | {speedups} |")
    return "\n".join(lines) + "\n"


def peer_versions(python: str) -> dict[str, str]:
    code = "import torch, torchvision, timm; print(torch.__version__, torchvision.__version__, timm.__version__)"
    out = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True)
    return dict(zip(("torch", "torchvision", "timm"), out.stdout.split()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-python", default=sys.executable)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    from mobilectl.core.tfenv import import_quietly

    import_quietly()
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="mobilectl-onnx-peers-"))
    files = export_ours(work) + export_peers(work, args.torch_python)
    count_nodes(files)
    measure(files, repeats=args.repeats, runs=args.runs, warmup=5)
    settings = {"repeats": args.repeats, "runs": args.runs, **peer_versions(args.torch_python),
                "wall_time_s": time.perf_counter() - started}
    publish(ROOT, "onnx_peers", markdown(files, settings), {"settings": settings}, files,
            start=START, end=END)
    log(f"done in {settings['wall_time_s'] / 60:.1f} min")


if __name__ == "__main__":
    main()
