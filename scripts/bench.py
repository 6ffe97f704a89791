"""The zoo's speed, size and accuracy figures on this machine, in one reproducible run.

    python scripts/bench.py            # the whole zoo, < 30 min on 2 cores
    python scripts/bench.py --quick    # a subset in a few minutes

Writes BENCHMARKS.md, benchmarks.json and plots under --out (default: the repository
root for the Markdown and JSON, ``bench/`` for the plots). Every latency is the median
of five interleaved repetitions (each itself a median over runs), with the 95%
bootstrap interval of that median (``device_profiles.stats``, as ``mobilectl profile``).

1. Host latency, LiteRT CPU (1 and 2 threads) for fp32/int8 TFLite and onnxruntime for
   fp32/int8 ONNX: MACs, achieved GMAC/s, fraction of this machine's peak (a float32
   matmul) and memory bandwidth (a copy), measured in the same run; a roofline plot.
2. Peer parity with keras.applications twins through the same pipeline.
3. Export cost: wall time per job for the zoo, a cached rebuild, peak memory.
4. int8 accuracy on models trained on scikit-learn's digits (32x32).
5. FLOPs against latency: Spearman correlation and plot.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TWINS = {"mobilenet_v1": "MobileNet", "mobilenet_v2": "MobileNetV2",
         "mobilenet_v3_small": "MobileNetV3Small", "mobilenet_v3_large": "MobileNetV3Large",
         "efficientnet_b0": "EfficientNetB0", "xception": "Xception"}
ACCURACY_MODELS = (("mobilenet_v1", {"width_multiplier": 0.25}),
                   ("shufflenet_v2", {"width_multiplier": 0.5}),
                   ("squeezenet1_1", {}),
                   ("mobilenet_v3_small", {"width_multiplier": 0.75}))
QUICK_FAMILIES = ("mobilenet_v1", "squeezenet1_0", "shufflenet_v2")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- exports via `mobilectl build` (gives export cost and the cached rebuild) -------

def zoo_spec(models: list[str], resolution: int | None, twins: dict[str, Path]) -> str:
    knobs = f"knobs = {{ resolution = {resolution} }}\n" if resolution else ""
    parts = ['[defaults]\nformats = ["tflite", "onnx"]\nprecisions = ["fp32", "int8"]\n'
             "calib_samples = 16\n"]
    for name in models:
        parts.append(f'[[artifact]]\nname = "{name}"\nmodel = "{name}"\n{knobs}')
    for name, path in twins.items():
        parts.append(f'[[artifact]]\nname = "twin-{name}"\nkeras = "{path}"\n'
                     'formats = ["tflite"]\n'  # random weights: measured, not gated
                     "[artifact.thresholds]\nmin_cosine = 0.0\nmin_sqnr_db = -100.0\n"
                     "min_top1 = 0.0\nmax_abs_error = 1.0\n")
    return "\n".join(parts)


def run_build(spec: Path, out: Path, cache: Path) -> tuple[dict[str, Any], float, float]:
    """`mobilectl build --json` in a fresh process: its JSON, wall time and peak RSS."""
    from device_profiles.host import _run

    start = time.perf_counter()
    stdout, _, peak = _run([sys.executable, "-m", "mobilectl.cli", "build", str(spec), "--out",
                            str(out), "--cache", str(cache), "--json", "--keep-going"],
                           timeout=3600, ok_codes=(0, 1))  # 1: a job failed; the rest measured
    return json.loads(stdout), time.perf_counter() - start, peak


def save_twins(models: list[str], resolution: int | None, folder: Path) -> dict[str, Path]:
    import keras

    from models_keras.registry import get_model_spec

    twins = {}
    for name in models:
        if name not in TWINS:
            continue
        spec = get_model_spec(name)
        knobs = spec.resolve(**({"resolution": resolution} if resolution else {}))
        keras.utils.set_random_seed(0)
        model = spec.keras_twin(**knobs)
        path = folder / f"{name}_keras_app.keras"
        model.save(path)
        twins[name] = path
    return twins


# ---- latency ------------------------------------------------------------------------

def latency_matrix(files: list[Path], *, threads: tuple[int, ...], repeats: int, runs: int,
                   warmup: int) -> dict[tuple[str, int], list[float]]:
    """Interleaved: every repeat runs every (file, threads) once, so drifts hit all."""
    from device_profiles import host

    medians: dict[tuple[str, int], list[float]] = {}
    for r in range(repeats):
        log(f"latency repeat {r + 1}/{repeats} over {len(files)} artifacts")
        for path in files:
            for t in threads:
                done = host.run_artifact(path, threads=t, runs=runs, warmup=warmup)
                medians.setdefault((path.name, t), []).append(done.latency.median_ms)
    return medians


def summarise(values: list[float]) -> dict[str, Any]:
    """The repetitions' median, its bootstrap interval, range and count."""
    from device_profiles.stats import median_interval

    low, high = median_interval(values) or (min(values), max(values))
    return {"median": statistics.median(values), "ci_low": low, "ci_high": high,
            "min": min(values), "max": max(values), "n": len(values), "values": values}


# ---- accuracy -----------------------------------------------------------------------

def accuracy_kept(models: tuple, epochs: int, work: Path) -> list[dict[str, Any]]:
    import keras

    from exporter import onnx as onnx_export
    from exporter import tflite
    from exporter.pipeline import ExportOptions, export
    from models_keras import build_model
    from models_keras.registry import get_model_spec
    from models_keras.training import digits_pixels, recalibrate_batch_norm

    pixels32, labels = digits_pixels()
    train, calib, test = slice(0, 1200), slice(1200, 1400), slice(1400, None)
    rows = []
    for name, knobs in models:
        log(f"accuracy: train {name} {knobs} for {epochs} epochs")
        keras.utils.set_random_seed(0)
        res = max(32, int(get_model_spec(name).knob("resolution").minimum))  # SqueezeNet: 64
        pixels = np.repeat(np.repeat(pixels32, res // 32, axis=1), res // 32, axis=2)
        x = (pixels.astype(np.float32) - 127.5) / 127.5
        np.save(work / f"calib-{res}.npy", pixels[calib])
        knobs = {**knobs, "resolution": res, "num_classes": 10}
        model = build_model(name, dropout=0.0, **knobs)
        model.compile(optimizer=keras.optimizers.Adam(3e-3),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x[train], labels[train], epochs=epochs, batch_size=64, verbose=0)
        recalibrate_batch_norm(model, x[train])
        weights = work / f"{name}.weights.h5"
        model.save_weights(weights)
        float_acc = float(np.mean(np.argmax(model.predict(x[test], verbose=0), 1) == labels[test]))
        out = work / f"acc-{name}"
        result = export(name, knobs=knobs, weights=str(weights),
                        options=ExportOptions(precision="int8", calib=str(work / f"calib-{res}.npy"),
                                              calib_samples=150, held_out=16,
                                              thresholds=_lenient()), out=out)
        row = {"model": name, "knobs": knobs, "float_top1": float_acc}
        for entry in result.entries:
            data = (out / entry.path).read_bytes()
            run = tflite.run if entry.format == "tflite" else onnx_export.run
            pred = np.argmax(run(data, x[test], layout=entry.layout), 1)
            row[f"{entry.format}_int8_top1"] = float(np.mean(pred == labels[test]))
        rows.append(row)
    return rows


def _lenient() -> Any:
    from exporter.pipeline import Thresholds

    return Thresholds(min_cosine=0.0, min_sqnr_db=-100.0, min_top1=0.0)  # measure, do not gate


# ---- the run ------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a subset in a few minutes")
    parser.add_argument("--out", default=str(ROOT), help="where BENCHMARKS.md and JSON go")
    args = parser.parse_args()
    from mobilectl.core.tfenv import import_quietly

    import_quietly()
    out = Path(args.out)
    plots = out / "bench"
    plots.mkdir(parents=True, exist_ok=True)
    settings = ({"resolution": 96, "repeats": 3, "runs": 5, "warmup": 2, "epochs": 2,
                 "accuracy_models": ACCURACY_MODELS[:1]} if args.quick else
                {"resolution": None, "repeats": 5, "runs": 10, "warmup": 3, "epochs": 8,
                 "accuracy_models": ACCURACY_MODELS})
    started = time.perf_counter()
    results = run_all(args.quick, settings, plots)
    results["wall_time_s"] = time.perf_counter() - started
    results["settings"] = {k: v for k, v in settings.items() if k != "accuracy_models"}
    (out / "benchmarks.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    from bench_report import markdown  # scripts/bench_report.py

    from bench_common import splice

    # the zoo's section only: the other scripts' sections and the notes written by hand stay
    splice(markdown(results, plots.relative_to(out) if plots.is_relative_to(out) else plots),
           out / "BENCHMARKS.md", start="<!-- zoo -->", end="<!-- /zoo -->")
    log(f"done in {results['wall_time_s'] / 60:.1f} min: {out / 'BENCHMARKS.md'}")


def _roof(measured: Any) -> dict[str, float]:
    """The measured host roofline as the figures the report prints."""
    return {"peak_gmacs_fp32": measured.peak_gmacs_fp32, "bandwidth_gbs": measured.bandwidth_gbs}


def run_all(quick: bool, s: dict[str, Any], plots: Path) -> dict[str, Any]:
    from device_profiles import host
    from models_keras.registry import family_representatives

    models = [spec.name for spec in family_representatives()]
    if quick:
        models = [m for m in models if m in QUICK_FAMILIES]
    work = Path(tempfile.mkdtemp(prefix="mobilectl-bench-"))
    roof_before = _roof(host.measure_roofline())
    twins = save_twins(models, s["resolution"], work)
    spec = work / "mobilectl.toml"
    spec.write_text(zoo_spec(models, s["resolution"], twins))
    log(f"export {len(models)} families + {len(twins)} twins (mobilectl build)")
    first, first_s, first_peak = run_build(spec, work / "dist", work / "cache")
    log(f"first build {first_s:.0f}s; cached rebuild")
    cached, cached_s, cached_peak = run_build(spec, work / "dist", work / "cache")
    manifest = json.loads((work / "dist" / "manifest.json").read_text())["artifacts"]
    files = [work / "dist" / e["path"] for e in manifest]
    medians = latency_matrix(files, threads=(1, 2), repeats=s["repeats"], runs=s["runs"],
                             warmup=s["warmup"])
    roof_after = _roof(host.measure_roofline())
    accuracy = accuracy_kept(s["accuracy_models"], s["epochs"], work)
    roofline = {k: statistics.median([roof_before[k], roof_after[k]]) for k in roof_before}
    rows = latency_rows(manifest, medians, roofline)
    from bench_report import correlation_and_plots

    return {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "roofline": roofline,
                    "roofline_before": roof_before, "roofline_after": roof_after},
        "latency": rows,
        "peers": peer_rows(rows),
        "export": {"first_build_s": first_s, "cached_rebuild_s": cached_s,
                   "first_build_peak_mb": first_peak, "cached_rebuild_peak_mb": cached_peak,
                   "jobs": first["jobs"], "cached_jobs": cached["jobs"]},
        "accuracy": accuracy,
        **correlation_and_plots(rows, roofline, plots),
    }


def latency_rows(manifest: list[dict[str, Any]], medians: dict, roofline: dict) -> list[dict]:
    from models_keras.analysis import analyze_model
    from models_keras.registry import get_model_spec

    traffic: dict[str, int] = {}
    rows = []
    for e in manifest:
        for threads in (1, 2):
            stats = summarise(medians[(e["path"], threads)])
            gmacs = e["macs"] / (stats["median"] * 1e-3) / 1e9 if e.get("macs") else None
            key = e["model"] + e.get("variant", "")
            if e["origin"] == "registry" and key not in traffic:
                spec = get_model_spec(e["model"])
                cost = analyze_model(spec.builder(**spec.resolve(**e["knobs"])))
                traffic[key] = cost.memory_access_bytes(4)
            rows.append({"artifact": e["path"], "model": e["model"], "origin": e["origin"],
                         "format": e["format"], "precision": e["precision"], "threads": threads,
                         "macs": e.get("macs"), "bytes": e["bytes"], "latency_ms": stats,
                         "gmacs": gmacs, "memory_access_bytes_fp32": traffic.get(key),
                         # the measured peak is float32's; int8 has none to compare with
                         "peak_fraction": gmacs / roofline["peak_gmacs_fp32"]
                         if gmacs and e["precision"] == "fp32" else None})
    return rows


def peer_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ours / keras.applications twin: latency and size, TFLite, same precision/threads."""
    from device_profiles.stats import ratio_interval

    index = {(r["model"], r["origin"] == "registry", r["format"], r["precision"], r["threads"]): r
             for r in rows}
    peers = []
    for (model, ours, fmt, precision, threads), row in index.items():
        if not ours or fmt != "tflite" or model not in TWINS:
            continue
        twin = index.get((f"{model}_keras_app", False, fmt, precision, threads))
        if twin is None:
            continue
        low, high = ratio_interval(row["latency_ms"]["values"], twin["latency_ms"]["values"])
        peers.append({"model": model, "twin": TWINS[model], "precision": precision,
                      "threads": threads, "ratio_ci_low": low, "ratio_ci_high": high,
                      "latency_ratio": row["latency_ms"]["median"] / twin["latency_ms"]["median"],
                      "size_ratio": row["bytes"] / twin["bytes"],
                      "ours_ms": row["latency_ms"]["median"], "twin_ms": twin["latency_ms"]["median"]})
    return sorted(peers, key=lambda p: (p["model"], p["precision"], p["threads"]))


if __name__ == "__main__":
    main()
