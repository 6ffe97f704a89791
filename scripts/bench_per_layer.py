"""Why int8 TFLite was slower than float, per layer, and what mobilectl's graphs change.

    python scripts/bench_per_layer.py [--repeats 3] [--resolution 224]

For MobileNet V3 Large, ESPNetv2 and ShuffleNet V1 (fresh weights with every batch
norm's statistics set from the calibration photos, so activations have the scale of a
trained network's; with raw initial statistics activations shrink layer by layer and
LiteRT refuses int8 ops on their tiny scales): TFLite fp32 and int8 from ``mobilectl
export``, and the same Keras model through the plain TF converter
(``TFLiteConverter.from_keras_model``, same calibration images) as the peer.
Whole-model latency with LiteRT's benchmark tool, interleaved (every repetition runs
every file at 1 and 2 threads); then every op of every file timed alone
(``mobilectl profile --per-layer``'s host method, 1 thread) and joined per layer.

Writes ``bench/per_layer.json`` and ``bench/per_layer.md`` and puts the latter into
BENCHMARKS.md between its per-layer markers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from bench_common import STATS_NOTE, log, measure, ms_cell, publish, ratio_cell  # noqa: E402  (scripts/ helpers)

START, END = "<!-- per-layer -->", "<!-- /per-layer -->"
FAMILIES = ("mobilenet_v3_large", "espnetv2", "shufflenet_v1")
CALIB = 32


def _calibration(name: str, resolution: int) -> Any:
    from models_keras.registry import get_model_spec
    from quant.calibration import load_calibration

    return load_calibration(None, resolution=resolution, samples=CALIB, held_out=4,
                            normalization=get_model_spec(name).normalization)


def _weights(name: str, resolution: int, work: Path) -> Path:
    """Fresh weights, batch-norm statistics set from the calibration photos."""
    import keras

    from models_keras import build_model
    from models_keras.training import trained_scales

    keras.utils.set_random_seed(0)
    model = build_model(name, resolution=resolution)
    trained_scales(model, _calibration(name, resolution).calibration)
    path = work / f"{name}.weights.h5"
    model.save_weights(path)
    return path


def _ours(name: str, resolution: int, weights: Path, work: Path) -> list[dict[str, Any]]:
    from exporter.options import Thresholds
    from exporter.pipeline import ExportOptions, export

    files = []
    for precision in ("fp32", "int8"):
        out = work / f"{name}-{precision}"
        export(name, knobs={"resolution": resolution}, weights=str(weights), out=out,
               options=ExportOptions(precision=precision, formats=("tflite",),
                                     calib_samples=CALIB, held_out=4, thresholds=Thresholds(
                                         min_cosine=-1.0, min_sqnr_db=-200.0, min_top1=0.0)))
        [path] = out.glob("*.tflite")
        files.append({"model": name, "build": "mobilectl", "precision": precision, "path": path})
    return files


def _plain(name: str, resolution: int, weights: Path, work: Path) -> list[dict[str, Any]]:
    """The same Keras model through TF's converter with nothing of ours in between."""
    import numpy as np
    import tensorflow as tf

    from models_keras import build_model

    from mobilectl.core.tfenv import third_party_output

    model = build_model(name, resolution=resolution, weights=str(weights))
    calib = _calibration(name, resolution).calibration
    files = []
    for precision in ("fp32", "int8"):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if precision == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: (
                [row[None].astype(np.float32)] for row in calib)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        path = work / f"{name}-plain-{precision}.tflite"
        with third_party_output():  # the converter prints its captured variables
            path.write_bytes(converter.convert())
        files.append({"model": name, "build": "plain converter", "precision": precision,
                      "path": path})
    return files


def per_layer(files: list[dict[str, Any]]) -> None:
    from device_profiles import host
    from device_profiles.per_layer import Device, OpTimes, of_file

    roof = host.measure_roofline()
    for f in files:
        log(f"time each op of {f['path'].name}")
        times = OpTimes.of_json(host.run_ops(f["path"], threads=1, runs=30, warmup=5))
        bytes_per = 1 if f["precision"] == "int8" else 4
        f["table"] = of_file(f["path"], times, device=Device(
            roof.peak_gmacs_fp32, roof.bandwidth_gbs, bytes_per))


def _builtin(table: Any) -> str:
    """Op types LiteRT ran with its builtin kernels: count and ms, slowest first."""
    kinds: dict[str, list[float]] = {}
    for row in table.rows:
        if row.kernel == "builtin":
            kinds.setdefault(row.kind, []).append(row.ms or 0.0)
    ranked = sorted(kinds.items(), key=lambda kv: -sum(kv[1]))
    return ", ".join(f"{k} x{len(v)} {sum(v):.2f} ms" for k, v in ranked) or "none"


def _summary_rows(files: list[dict[str, Any]]) -> list[str]:
    lines = ["| model | build | fp32 ms, 1 thread | int8 ms, 1 thread | int8/fp32 | "
             "fp32 ms, 2 threads | int8 ms, 2 threads | int8/fp32 |", "|" + "---|" * 8]
    for name in FAMILIES:
        for build in ("plain converter", "mobilectl"):
            pick = {f["precision"]: f for f in files if f["model"] == name and f["build"] == build}
            cells = []
            for threads in (1, 2):
                fp32, int8 = pick["fp32"]["ms"][threads], pick["int8"]["ms"][threads]
                cells += [ms_cell(fp32), ms_cell(int8), ratio_cell(int8, fp32)]
            lines.append(f"| {name} | {build} | " + " | ".join(cells) + " |")
    return lines


def _family_text(name: str, files: list[dict[str, Any]]) -> list[str]:
    from device_profiles.per_layer import compare

    pick = {(f["build"], f["precision"]): f["table"] for f in files if f["model"] == name}
    lines = [f"**{name}** (each op alone, 1 thread; the ops sum to "
             f"{pick['mobilectl', 'int8'].sum_ms:.2f} ms int8 and "
             f"{pick['mobilectl', 'fp32'].sum_ms:.2f} ms fp32, "
             f"{pick['plain converter', 'int8'].sum_ms:.2f} ms int8 from the plain converter; "
             "sum of the parts over the whole model timed the same way: " + ", ".join(
                 f"{build} {precision} {t.parts_over_whole:.2f}"
                 for (build, precision), t in sorted(pick.items())) + ")",
             "", f"- plain converter int8, ops on LiteRT's builtin kernels: "
             f"{_builtin(pick['plain converter', 'int8'])}",
             f"- mobilectl int8, ops on LiteRT's builtin kernels: "
             f"{_builtin(pick['mobilectl', 'int8'])}", "",
             "| layers (mobilectl int8 slower than its fp32) | int8 ops | int8 ms | fp32 ms | "
             "why |", "|---|---|---|---|---|"]
    slower = [p for p in compare(pick["mobilectl", "int8"], pick["mobilectl", "fp32"])
              if p.ms > p.reference_ms][:5]
    for p in slower:
        lines.append(f"| {', '.join(p.layers)} | {' '.join(p.kinds)} | {p.ms:.3f} "
                     f"| {p.reference_ms:.3f} | {', '.join(p.flags) or '-'} |")
    if not slower:
        lines.append("| (none) | | | | |")
    return lines + [""]


def markdown(files: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = ["## Per layer: why int8 TFLite was slower", "",
             f"Generated by `python scripts/bench_per_layer.py --repeats {args.repeats} "
             f"--resolution {args.resolution}`. Whole-model latency: " + STATS_NOTE + ", "
             "over "
             f"{args.repeats} interleaved repetitions, each the median of 50 runs after 10 "
             "warm-up runs, LiteRT's benchmark tool (XNNPACK). Weights: fresh, with batch-norm "
             "statistics and output scale of a trained network's "
             "(`models_keras.training.trained_scales`); the plain converter converts the "
             "same Keras model with the same calibration images.", "",
             *_summary_rows(files), ""]
    for name in FAMILIES:
        lines += _family_text(name, files)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=224)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mobilectl-per-layer-") as tmp:
        work, files = Path(tmp), []
        for name in FAMILIES:
            log(f"prepare {name}")
            weights = _weights(name, args.resolution, work)
            files += _ours(name, args.resolution, weights, work)
            files += _plain(name, args.resolution, weights, work)
        measure(files, repeats=args.repeats, runs=50, warmup=10)
        per_layer(files)
        text = markdown(files, args)
        rows = [{k: v for k, v in f.items() if k != "table"} | {
            "per_layer": f["table"].as_dict()} for f in files]
        publish(ROOT, "per_layer", text, {"resolution": args.resolution,
                                          "repeats": args.repeats}, rows,
                start=START, end=END)
    print(text)


if __name__ == "__main__":
    main()
