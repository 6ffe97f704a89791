"""Quantization-aware training and mixed precision, measured: accuracy on the artifact,
size, host latency.

    python scripts/bench_qat.py [--resolution 64] [--epochs 15] [--tune 3] [--repeats 5]

MobileNet V3 Small and MobileNet V2 1.0 are trained here on scikit-learn's digits
(upsampled to --resolution, a seeded stratified 80/20 split; nothing downloaded). Each
is exported as float and as post-training int8 (64 calibration images from the
training part) with `mobilectl export`, and fine-tuned with `mobilectl qat` for --tune
epochs with 8-, 4- and 2-bit (ternary) weights. Every artifact's top-1 is measured on
the validation part as it runs (LiteRT for TFLite, onnxruntime for ONNX); the TFLite
files are timed with LiteRT on this host (1 thread, interleaved repetitions).

Mixed precision (`mobilectl export --mixed`, TFLite only) from the same float model:
within a 1-point accuracy budget on the validation part, minimising size and
minimising host latency; within a size budget of 70% of the post-training int8 file;
and, for reference, uniform 16-bit activations (every layer a16w8), which the latency
search leaves out.

Writes ``bench/qat.json`` and ``bench/qat.md`` and puts the latter into BENCHMARKS.md
between its qat markers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_common import STATS_NOTE, log, ms_cell, publish  # noqa: E402  (scripts/ helpers)
from bench_prune import digits, measure_one_thread, train  # noqa: E402

MODELS = ("mobilenet_v3_small", "mobilenet_v2")
BITS = (8, 4, 2)
START, END = "<!-- qat -->", "<!-- /qat -->"


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--tune", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=30)
    return parser.parse_args()


def post_training(name: str, weights: Path, paths: tuple[Path, Path, Path], *,
                  resolution: int, work: Path) -> list[dict[str, Any]]:
    """Float and post-training int8 artifacts (TFLite and ONNX), with their top-1."""
    from exporter.pipeline import ExportOptions, export
    from mobilectl.evaluate import DataSource, evaluate

    rows = []
    for precision in ("fp32", "int8"):
        out = work / f"{name}-{precision}"
        log(f"export {name} {precision}")
        export(name, knobs={"resolution": resolution, "num_classes": 10}, weights=str(weights),
               out=out, options=ExportOptions(precision=precision, calib=str(paths[2]),
                                              calib_samples=64))
        results = evaluate(str(out), DataSource(str(paths[1])), record=False)
        rows.append({"model": name, "recipe": "float" if precision == "fp32" else "PTQ int8",
                     "artifacts": {str(r.entry.format): {"path": out / r.entry.path,
                                                         "bytes": r.entry.bytes,
                                                         "top1": r.accuracy.top1}
                                   for r in results}})
    return rows


def quantization_aware(name: str, weights: Path, paths: tuple[Path, Path, Path], *,
                       resolution: int, tune: int, work: Path) -> list[dict[str, Any]]:
    """``mobilectl qat`` at each weight width: the artifacts' top-1 on the validation part."""
    from mobilectl.qat import QatOptions, qat

    rows = []
    for bits in BITS:
        log(f"qat {name} int{bits} weights, {tune} epoch(s)")
        out = work / f"{name}-qat{bits}"
        report = qat(name, data=str(paths[0]), val=str(paths[1]), out=out,
                     knobs={"resolution": resolution, "num_classes": 10}, weights=str(weights),
                     options=QatOptions(bits, tune))
        rows.append({"model": name, "recipe": f"QAT int{bits} weights",
                     "qat_keras_top1": report.qat_top1,
                     "artifacts": {a.format: {"path": out / a.path, "bytes": a.bytes,
                                              "top1": a.top1} for a in report.artifacts}})
    return rows


MIXED = (("accuracy=-1pt", "size", "mixed: -1 pt, min size"),
         ("accuracy=-1pt", "latency", "mixed: -1 pt, min latency"),
         ("size=0.7int8", None, "mixed: size <= 70% of int8"))


def mixed_recipes(name: str, weights: Path, paths: tuple[Path, Path, Path], *,
                  resolution: int, int8_bytes: int, work: Path) -> list[dict[str, Any]]:
    """``export --mixed`` within each budget of MIXED, and uniform a16w8."""
    from exporter.pipeline import ExportOptions
    from mobilectl.evaluate import DataSource
    from mobilectl.mixed import Axis, Budget, MixedOptions, mixed_export

    rows = []
    for budget, minimise, label in MIXED:
        chosen = (Budget(Axis.SIZE, 0.7 * int8_bytes) if budget == "size=0.7int8"
                  else Budget.parse(budget))
        out = work / f"{name}-mixed-{len(rows)}"
        log(f"export {name} --mixed --budget {chosen.text}" + (f" --minimise {minimise}"
                                                             if minimise else ""))
        result = mixed_export(name, mixed=MixedOptions(chosen, minimise and Axis(minimise)),
                              options=ExportOptions(precision="int8", formats=("tflite",),
                                                    calib=str(paths[2]), calib_samples=64),
                              out=out, knobs={"resolution": resolution, "num_classes": 10},
                              weights=str(weights), data=DataSource(str(paths[1])))
        rows.append(_mixed_row(name, label, result, out))
    rows.append(uniform_a16(name, weights, paths, resolution=resolution, work=work))
    return rows


def _mixed_row(name: str, label: str, result: Any, out: Path) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for layer in result.layers:
        counts[str(layer.precision)] = counts.get(str(layer.precision), 0) + 1
    return {"model": name, "recipe": label, "verdict": result.verdict,
            "measured": len(result.trace), "layers": counts,
            "artifacts": {"tflite": {"path": out / result.written[0],
                                     "bytes": result.chosen.bytes, "top1": result.chosen.top1}}}


def uniform_a16(name: str, weights: Path, paths: tuple[Path, Path, Path], *, resolution: int,
                work: Path) -> dict[str, Any]:
    """Every weighted layer with 16-bit activations and int8 weights."""
    from exporter.pipeline import ExportOptions, build_or_load, export
    from mobilectl.evaluate import DataSource, evaluate
    from quant.mixed import float_flatbuffer, units, weighted_layers

    source = build_or_load(name, knobs={"resolution": resolution, "num_classes": 10},
                           weights=str(weights))
    found = units(float_flatbuffer(source.model), weighted=weighted_layers(source.model))
    out = work / f"{name}-a16w8"
    log(f"export {name} with every layer a16w8")
    export(name, knobs={"resolution": resolution, "num_classes": 10}, weights=str(weights),
           out=out, options=ExportOptions(precision="int8", formats=("tflite",),
                                          calib=str(paths[2]), calib_samples=64,
                                          layer_precisions=tuple((u.layer, "a16w8")
                                                                 for u in found)))
    result = evaluate(str(out), DataSource(str(paths[1])), record=False)[0]
    return {"model": name, "recipe": "uniform a16w8", "layers": {"a16w8": len(found)},
            "artifacts": {"tflite": {"path": out / result.entry.path,
                                     "bytes": result.entry.bytes,
                                     "top1": result.accuracy.top1}}}


def markdown(rows: list[dict[str, Any]], s: dict[str, Any]) -> str:
    lines = ["## Quantization-aware training and mixed precision: accuracy on the artifact, "
             "size, latency", "",
             f"`python scripts/bench_qat.py` ({s['repeats']} interleaved repetitions, each the "
             f"median of {s['runs']} runs after 5 warm-up runs, LiteRT, 1 thread; {STATS_NOTE}; "
             f"{s['wall_time_s'] / 60:.1f} min). The digits at {s['resolution']}x"
             f"{s['resolution']}, trained {s['epochs']} epochs from scratch on 80%, top-1 of "
             f"each artifact as it runs on the other 20% ({s['val_samples']} images). PTQ: "
             "post-training int8 calibrated on 64 training images; QAT: `mobilectl qat`, "
             f"{s['tune']} epochs of fine-tuning from the float model, no calibration data.",
             "", "| model | recipe | TFLite top-1 | vs float | ONNX top-1 | TFLite size | "
             "vs PTQ int8 | TFLite ms |", "|" + "---|" * 8]
    base = {r["model"]: r for r in rows if r["recipe"] == "float"}
    ptq = {r["model"]: r for r in rows if r["recipe"] == "PTQ int8"}
    for r in rows:
        tfl, onnx = r["artifacts"]["tflite"], r["artifacts"].get("onnx")
        float_top1 = base[r["model"]]["artifacts"]["tflite"]["top1"]
        int8_bytes = ptq[r["model"]]["artifacts"]["tflite"]["bytes"]
        lines.append(f"| {r['model']} | {r['recipe']} | {tfl['top1']:.3f} "
                     f"| {(tfl['top1'] - float_top1) * 100:+.1f} pt "
                     f"| {'-' if onnx is None else format(onnx['top1'], '.3f')} "
                     f"| {tfl['bytes'] / 1e6:.2f} MB | {tfl['bytes'] / int8_bytes:.0%} "
                     f"| {ms_cell(tfl['ms'][1])} |")
    lines += ["", "The mixed recipes (TFLite only; layers per precision, recipes measured in "
              "the search, and the search's verdict against uniform int8):", ""]
    lines += [f"- {r['model']}, {r['recipe']}: "
              + ", ".join(f"{n} {p}" for p, n in sorted(r["layers"].items()))
              + (f"; {r['measured']} recipes measured; {r['verdict']}" if "verdict" in r else "")
              for r in rows if "layers" in r]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = arguments()
    from mobilectl.core.tfenv import import_quietly

    import_quietly()
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="mobilectl-qat-"))
    paths = digits(work, args.resolution)
    rows = []
    for name in MODELS:
        weights = train(name, paths[0], resolution=args.resolution, epochs=args.epochs, work=work)
        rows += post_training(name, weights, paths, resolution=args.resolution, work=work)
        rows += quantization_aware(name, weights, paths, resolution=args.resolution,
                                   tune=args.tune, work=work)
        int8_bytes = next(r for r in rows if r["model"] == name
                          and r["recipe"] == "PTQ int8")["artifacts"]["tflite"]["bytes"]
        rows += mixed_recipes(name, weights, paths, resolution=args.resolution,
                              int8_bytes=int8_bytes, work=work)
    files = [r["artifacts"]["tflite"] for r in rows]
    for f in files:
        f["ms"] = {}
    measure_one_thread(files, repeats=args.repeats, runs=args.runs)
    import numpy as np

    settings = {"repeats": args.repeats, "runs": args.runs, "resolution": args.resolution,
                "epochs": args.epochs, "tune": args.tune,
                "val_samples": int(len(np.load(paths[1])["y"])),
                "wall_time_s": time.perf_counter() - started}
    plain = [{**r, "artifacts": {k: {**a, "path": a["path"].name} for k, a in r["artifacts"].items()}}
             for r in rows]
    publish(ROOT, "qat", markdown(rows, settings), {"settings": settings, "rows": plain},
            files, start=START, end=END)
    log(f"done in {settings['wall_time_s'] / 60:.1f} min")


if __name__ == "__main__":
    main()
