"""int8 ONNX on this host: activation type and calibration method, measured.

    python scripts/bench_onnx_int8.py [--repeats 5] [--runs 20] [--epochs 8]

1. Latency (onnxruntime, 1 and 2 threads, 224x224): fp32 against int8 with uint8
   activations (U8S8, the x86 target's choice) and with int8 activations (S8S8, the
   ARM choice) for MobileNet V2 and ShuffleNet V2 1.0, all through `mobilectl export`,
   interleaved (every repetition runs every file once), medians with their 95% bootstrap intervals.
2. Accuracy on scikit-learn's digits (MobileNet V1 0.25, 32x32, trained here): float
   against int8 ONNX with min/max, entropy and percentile calibration, U8S8.

Writes ``bench/onnx_int8.json`` and ``bench/onnx_int8.md`` and puts the latter into
BENCHMARKS.md between its onnx-int8 markers.
"""

from __future__ import annotations

import argparse
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

MODELS = (("mobilenet_v2", {}), ("shufflenet_v2", {}))
VARIANTS = (("fp32", "fp32", None), ("int8 U8S8", "int8", "uint8"), ("int8 S8S8", "int8", "int8"))
START, END = "<!-- onnx-int8 -->", "<!-- /onnx-int8 -->"


def export_all(work: Path) -> list[dict[str, Any]]:
    from exporter.pipeline import ExportOptions, Thresholds, export

    lenient = Thresholds(min_cosine=0.0, min_sqnr_db=-100.0, min_top1=0.0, max_abs_error=1.0)
    files = []
    for name, knobs in MODELS:
        for label, precision, activations in VARIANTS:
            log(f"export {name} {label}")
            result = export(name, knobs=knobs, out=work / name, options=ExportOptions(
                precision=precision, formats=("onnx",), calib_samples=16,
                activations=activations, thresholds=lenient))
            (entry,) = result.entries
            files.append({"model": name, "variant": label, "macs": entry.macs,
                          "path": work / name / entry.path})
    return files




def accuracy(work: Path, epochs: int) -> dict[str, float]:
    """Float and int8 ONNX top-1 on the digits' test split, per calibration method."""
    import keras

    from exporter import onnx as onnx_export
    from exporter.pipeline import ExportOptions, Thresholds, export
    from models_keras import build_model
    from models_keras.training import digits_pixels, recalibrate_batch_norm

    pixels, labels = digits_pixels()
    x = (pixels.astype(np.float32) - 127.5) / 127.5
    knobs = {"width_multiplier": 0.25, "resolution": 32, "num_classes": 10}
    keras.utils.set_random_seed(0)
    model = build_model("mobilenet_v1", dropout=0.0, **knobs)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    log(f"accuracy: train MobileNet V1 0.25 on the digits for {epochs} epochs")
    model.fit(x[:1200], labels[:1200], epochs=epochs, batch_size=64, verbose=0)
    recalibrate_batch_norm(model, x[:1200])
    model.save_weights(work / "digits.weights.h5")
    np.save(work / "calib.npy", pixels[1200:1400])
    test = slice(1400, None)
    top1 = {"float": float(np.mean(np.argmax(model.predict(x[test], verbose=0), 1) == labels[test]))}
    for method in ("minmax", "entropy", "percentile"):
        log(f"accuracy: int8 ONNX, {method} calibration")
        result = export("mobilenet_v1", knobs=knobs, weights=str(work / "digits.weights.h5"),
                        out=work / f"acc-{method}", options=ExportOptions(
                            precision="int8", formats=("onnx",), calib=str(work / "calib.npy"),
                            calib_samples=150, held_out=16, calib_method=method,
                            thresholds=Thresholds(min_cosine=0.0, min_sqnr_db=-100.0,
                                                  min_top1=0.0)))
        data = (work / f"acc-{method}" / result.entries[0].path).read_bytes()
        outputs = onnx_export.run(data, x[test], layout=result.entries[0].layout)
        top1[method] = float(np.mean(np.argmax(outputs, 1) == labels[test]))
    return top1




def markdown(files: list[dict[str, Any]], top1: dict[str, float], s: dict[str, Any]) -> str:
    lines = ["## int8 ONNX on this host: activation type and calibration", "",
             f"`python scripts/bench_onnx_int8.py` ({s['repeats']} interleaved repetitions, "
             f"each the median of {s['runs']} runs after 5 warm-up runs; " + STATS_NOTE + "; "
             f"{s['wall_time_s'] / 60:.1f} min). onnxruntime, 224x224, fresh weights.", "",
             "| model | variant | 1 thread | 2 threads | fp32 / this (2 threads) |",
             "|---|---|---|---|---|"]
    for f in files:
        fp32 = next(g for g in files if g["model"] == f["model"] and g["variant"] == "fp32")
        lines.append(f"| {f['model']} | {f['variant']} | {ms_cell(f['ms'][1])} | {ms_cell(f['ms'][2])} "
                     f"| {ratio_cell(fp32['ms'][2], f['ms'][2], suffix='x')} |")
    lines += ["", "Digits (MobileNet V1 0.25, 32x32, trained here; top-1 on the 397 test "
              "digits), int8 ONNX with uint8 activations:", "",
              "| model | top-1 | drop |", "|---|---|---|"]
    for name, value in top1.items():
        drop = "-" if name == "float" else f"{top1['float'] - value:+.3f}"
        lines.append(f"| {'float (Keras)' if name == 'float' else name + ' calibration'} "
                     f"| {value:.3f} | {drop} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    from mobilectl.core.tfenv import import_quietly

    import_quietly()
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="mobilectl-onnx-int8-"))
    files = export_all(work)
    measure(files, repeats=args.repeats, runs=args.runs, warmup=5)
    top1 = accuracy(work, args.epochs)
    settings = {"repeats": args.repeats, "runs": args.runs,
                "wall_time_s": time.perf_counter() - started}
    text = markdown(files, top1, settings)
    publish(ROOT, "onnx_int8", text, {"settings": settings, "accuracy_top1": top1}, files,
            start=START, end=END)
    log(f"done in {settings['wall_time_s'] / 60:.1f} min")


if __name__ == "__main__":
    main()
