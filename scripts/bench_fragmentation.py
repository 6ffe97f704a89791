"""ShuffleNet V2's guideline G3, measured: NASNet-A Mobile against MobileNet V2 at equal
MACs on this machine.

    python scripts/bench_fragmentation.py [--repeats 5] [--runs 10]

NASNet-A Mobile (564M MACs) is fragmented: many small branches per cell. MobileNet V2
1.4 (582M MACs) is a plain chain of inverted residuals. Both are exported by the same
pipeline (TFLite and ONNX, fp32 and int8, freshly initialised weights: speed does not
depend on the weight values), next to keras.applications' NASNetMobile through the
plain TF converter as a peer. Latency is measured interleaved (every repetition runs
every artifact once, so drift hits all), 1 and 2 threads; each repetition is the median
of ``--runs`` runs. The op count and the median MACs per compute op come from the
.tflite files (``mobilectl info``'s reader).

Writes ``bench/fragmentation.json`` and ``bench/fragmentation.md`` and puts the latter
into BENCHMARKS.md between its fragmentation markers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_common import STATS_NOTE, log, measure, ms_cell, publish  # noqa: E402  (scripts/ helpers)
from device_profiles.stats import ratio_interval  # noqa: E402

MODELS = (("nasnet_mobile", {}), ("mobilenet_v2", {"width_multiplier": 1.4}))
COMPUTE = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
START, END = "<!-- fragmentation -->", "<!-- /fragmentation -->"




def export_all(work: Path) -> list[dict[str, Any]]:
    """Our two models in both formats and precisions, and the keras twin as TFLite."""
    import keras

    from exporter import tflite
    from exporter.pipeline import ExportOptions, Thresholds, export

    lenient = Thresholds(min_cosine=0.0, min_sqnr_db=-100.0, min_top1=0.0, max_abs_error=1.0,
                         max_abs_error_fp16=1.0)  # random weights: measured, not gated
    files = []
    for name, knobs in MODELS:
        for precision in ("fp32", "int8"):
            log(f"export {name} {knobs} {precision}")
            result = export(name, knobs=knobs, out=work / name, options=ExportOptions(
                precision=precision, calib_samples=16, thresholds=lenient))
            files += [{"model": name, "peer": False, "format": e.format, "precision": e.precision,
                       "macs": e.macs, "path": work / name / e.path} for e in result.entries]
    log("export keras.applications.NASNetMobile with the plain TF converter (fp32)")
    keras.utils.set_random_seed(0)
    twin = keras.applications.NASNetMobile(weights=None)
    path = work / "keras_nasnet_mobile.tflite"
    path.write_bytes(tflite.convert(twin))
    files.append({"model": "keras NASNetMobile", "peer": True, "format": "tflite",
                  "precision": "fp32", "macs": files[0]["macs"], "path": path})
    return files


def op_shape(path: Path) -> dict[str, Any]:
    """Op count, compute-op count and the median MACs per compute op of a .tflite."""
    from device_profiles import tflite_cost

    cost = tflite_cost.analyze(path.read_bytes(), name=path.name)
    compute = [layer.macs for layer in cost.layers if layer.kind in COMPUTE]
    return {"ops": len(cost.layers), "compute_ops": len(compute),
            "median_macs_per_compute_op": statistics.median(compute)}




def ratios(files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """NASNet / MobileNet V2 1.4 per format, precision and threads: the ratio of the
    medians and its bootstrap interval (both ran in every repetition)."""
    index = {(f["model"], f["format"], f["precision"]): f for f in files if not f["peer"]}
    rows = []
    for (model, fmt, precision), nas in index.items():
        if model != "nasnet_mobile":
            continue
        mnv2 = index[("mobilenet_v2", fmt, precision)]
        for threads in (1, 2):
            low, high = ratio_interval(nas["ms"][threads], mnv2["ms"][threads]) or (None, None)
            rows.append({"format": fmt, "precision": precision, "threads": threads,
                         "nasnet_ms": statistics.median(nas["ms"][threads]),
                         "mobilenet_v2_ms": statistics.median(mnv2["ms"][threads]),
                         "ratio": statistics.median(nas["ms"][threads])
                         / statistics.median(mnv2["ms"][threads]),
                         "ratio_ci_low": low, "ratio_ci_high": high})
    return rows




def markdown(files: list[dict[str, Any]], rows: list[dict[str, Any]], s: dict[str, Any]) -> str:
    lines = [
        "## Fragmentation (ShuffleNet V2's G3): NASNet-A Mobile vs MobileNet V2 1.4", "",
        f"`python scripts/bench_fragmentation.py` ({s['repeats']} interleaved repetitions, each "
        f"the median of {s['runs']} runs after 3 warm-up runs; " + STATS_NOTE + "; "
        f"{s['wall_time_s'] / 60:.1f} min). Fresh weights; 224x224.", "",
        "| model | MACs | .tflite ops | compute ops | median MACs/op | format | precision "
        "| 1 thread | 2 threads |", "|---|---|---|---|---|---|---|---|---|"]
    for f in files:
        shape = f["shape"]
        lines.append(f"| {f['model']} | {f['macs'] / 1e6:.0f}M | {shape['ops']} "
                     f"| {shape['compute_ops']} | {shape['median_macs_per_compute_op'] / 1e6:.2f}M "
                     f"| {f['format']} | {f['precision']} | {ms_cell(f['ms'][1])} | {ms_cell(f['ms'][2])} |")
    lines += ["", "NASNet / MobileNet V2 1.4 latency (ratio of medians with its 95% "
              "bootstrap interval):", "",
              "| format | precision | threads | NASNet ms | MobileNet V2 1.4 ms | ratio |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['format']} | {r['precision']} | {r['threads']} | {r['nasnet_ms']:.2f} "
                     f"| {r['mobilenet_v2_ms']:.2f} | {r['ratio']:.2f} "
                     f"[{r['ratio_ci_low']:.2f}-{r['ratio_ci_high']:.2f}] |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    from mobilectl.core.tfenv import import_quietly

    import_quietly()
    started = time.perf_counter()
    files = export_all(Path(tempfile.mkdtemp(prefix="mobilectl-frag-")))
    for f in files:
        if f["format"] == "tflite":
            f["shape"] = op_shape(f["path"])
    for f in files:  # an .onnx row shows its .tflite sibling's op shape
        f.setdefault("shape", next(g["shape"] for g in files if g["model"] == f["model"]
                                   and g["format"] == "tflite" and g["precision"] == f["precision"]))
    measure(files, repeats=args.repeats, runs=args.runs, warmup=3)
    rows = ratios(files)
    settings = {"repeats": args.repeats, "runs": args.runs,
                "wall_time_s": time.perf_counter() - started}
    text = markdown(files, rows, settings)
    publish(ROOT, "fragmentation", text, {"settings": settings, "ratios": rows}, files,
            start=START, end=END)
    log(f"done in {settings['wall_time_s'] / 60:.1f} min")


if __name__ == "__main__":
    main()
