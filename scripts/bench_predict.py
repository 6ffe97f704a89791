"""Latency prediction held out on whole networks: fit on kernels only, predict the zoo.

1. Every registry model at several resolutions and widths, fp32 and int8, converted
   as ``export`` converts it (first, so that the slow conversions do not stand between
   the calibration and the measurement).
2. Calibrate this machine afresh (``mobilectl device calibrate --device host
   --restart``): the kernel grid's blocks, fp32 and int8, timed one op at a time. This
   VM's speed drifts by 10% over hours, so a table from another run would measure the
   drift, not the predictor; ``--resume`` keeps the saved table instead.
3. Each variant predicted from the table (no zoo network is in it) and measured with
   LiteRT's benchmark tool (``profile --device host``'s backend, ``--repeats`` fresh
   processes in interleaved rounds), as two statistics of the processes' medians: their
   median, and the fastest process, the statistic each kernel of the table has
   (``calibrate.kernel_ms``: a slow process is slow for every kernel it runs).
4. The drift probe: the grid's first blocks re-timed after the zoo, against their
   table times.
5. Per precision and statistic: the share of variants within +-10% and +-20%, the
   RMSPE, and Spearman(predicted, measured) next to Spearman(MACs, measured).

Usage: python scripts/bench_predict.py [--repeats 5] [--budget-min 30] [--quick] [--resume]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from bench_common import log, publish  # noqa: E402

THREADS = 2
START, END = "<!-- bench: predict -->", "<!-- /bench: predict -->"


def variants(quick: bool) -> list[tuple[str, dict[str, Any]]]:
    """(registry name, knobs): each model at two resolutions, and at a second width
    where it has a width knob."""
    from models_keras.registry import list_models

    found = []
    for spec in list_models():
        if quick and spec not in _representatives():
            continue
        base = spec.default_resolution
        low = 64 if base <= 32 else (128 if base < 299 else 160)
        high = base if base <= 32 or base < 299 else 224
        found += [(spec.name, {"resolution": low}), (spec.name, {"resolution": high})]
        if "width_multiplier" in spec.knob_names:
            knob = spec.knob("width_multiplier")
            width = min(knob.choices) if knob.choices else 0.5
            if width == knob.default:
                width = sorted(knob.choices)[1]
            found.append((spec.name, {"resolution": high, "width_multiplier": width}))
    return found


def _representatives() -> list[Any]:
    from models_keras.registry import family_representatives

    return family_representatives()


def measure(path: Path, repeats: int) -> list[float]:
    from device_profiles import host

    return [host.run_tflite(path, threads=THREADS, runs=30, warmup=5).latency.median_ms
            for _ in range(repeats)]


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def noise_floor(rows: list[dict[str, Any]]) -> float:
    """The share of single processes within +-10% of the median of their variant's other
    processes: how often this machine reproduces its own measurement as closely as the
    accuracy target asks of a prediction."""
    within = []
    for r in rows:
        reps = r["measured_reps"]
        for i, x in enumerate(reps):
            others = statistics.median(reps[:i] + reps[i + 1:])
            within.append(abs(x / others - 1) <= 0.10)
    return sum(within) / len(within)


#: statistic of a variant's processes -> (its key in a row, the key of its error)
STATISTICS = {"median": ("measured_ms", "error_pct"), "fastest": ("fastest_ms", "fastest_error_pct")}
LABELS = {"median": "median of processes", "fastest": "fastest process"}


def summary(rows: list[dict[str, Any]], statistic: str) -> dict[str, Any]:
    measured_key, error_key = STATISTICS[statistic]
    errors = [r[error_key] for r in rows]
    measured = [r[measured_key] for r in rows]
    return {"variants": len(rows),
            "within_10": sum(abs(e) <= 10 for e in errors) / len(rows),
            "within_20": sum(abs(e) <= 20 for e in errors) / len(rows),
            "rmspe": math.sqrt(statistics.mean(e * e for e in errors)),
            "median_abs_error_pct": statistics.median(abs(e) for e in errors),
            "spearman_predicted": spearman([r["predicted_ms"] for r in rows], measured),
            "spearman_macs": spearman([r["macs"] for r in rows], measured),
            "lower_bounds": sum(r["lower_bound"] for r in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget-min", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true", help="one model per family")
    parser.add_argument("--resume", action="store_true", help="keep the saved kernel table")
    args = parser.parse_args()
    from mobilectl.core.tfenv import import_quietly

    import_quietly()
    from device_profiles.profile import load_profile
    from mobilectl.calibrate import CalibrateOptions, calibrate
    from device_profiles.predictor import Predictor

    folder = ROOT / "bench" / "predict-files"
    folder.mkdir(parents=True, exist_ok=True)
    rows = converted(folder, quick=args.quick)
    start = time.monotonic()
    options = CalibrateOptions(budget_min=args.budget_min, restart=not args.resume)
    done = calibrate(load_profile("host"), options, log)
    calibration_s = time.monotonic() - start
    log(f"kernel table: {len(done.table.rows)} kernels, {done.remaining} blocks left")
    predictor = Predictor(done.table)
    predicted(rows, predictor, folder)
    measured(rows, folder, repeats=args.repeats)
    drift = probe(done.table)
    for file in folder.glob("*.tflite"):
        file.unlink()
    folder.rmdir()
    by_precision = {p: {stat: summary([r for r in rows if r["precision"] == p], stat)
                        for stat in STATISTICS} for p in ("fp32", "int8")}
    noise = {p: noise_floor([r for r in rows if r["precision"] == p])
             for p in by_precision if args.repeats > 1}
    text = render(rows, by_precision, done, calibration_s, args, drift, noise)
    print(text)
    publish(ROOT, "predict", text, {"summary": by_precision, "rows": rows, "drift": drift,
                                    "process_within_10": noise,
                                    "fits": [f.__dict__ for f in predictor.fits],
                                    "in_graph": [g.__dict__ for g in predictor.in_graph.values()]},
            [],
            start=START, end=END)


def converted(folder: Path, *, quick: bool) -> list[dict[str, Any]]:
    """Every variant converted, its file kept in ``folder``."""
    from mobilectl.core.types import Precision
    from mobilectl.predict import flatbuffer_of

    rows = []
    for name, knobs in variants(quick):
        for precision in (Precision.FP32, Precision.INT8):
            data, label = flatbuffer_of(name, precision=precision, knobs=knobs, progress=log)
            _artifact(folder, label, str(precision)).write_bytes(data)
            rows.append({"model": label, "precision": str(precision), "measured_reps": []})
    return rows


def predicted(rows: list[dict[str, Any]], predictor: Any, folder: Path) -> None:
    """Each converted variant predicted from the table."""
    from mobilectl.predict import predict_flatbuffer

    for r in rows:
        data = _artifact(folder, r["model"], r["precision"]).read_bytes()
        prediction, _, macs = predict_flatbuffer(data, predictor)
        r.update(macs=macs, predicted_ms=prediction.total_ms, lower_bound=prediction.lower_bound,
                 missing=list(prediction.missing))


def probe(table: Any, blocks: int = 24) -> dict[str, float]:
    """The grid's first ``blocks`` (every kind, round-robin) re-timed now: per precision
    the median of now / table over their kernels (1.0: the machine ran as fast after the
    zoo as while calibrating)."""
    import tempfile

    from device_profiles.profile import load_profile
    from mobilectl.calibrate import CalibrateOptions, cut_block, time_batch, timer_for
    from mobilectl.kernel_grid import CHAIN_KINDS, grid

    timer = timer_for(load_profile("host"), CalibrateOptions())
    then = {(r.block, r.kernel, r.features): r.ms for r in table.rows}
    ratios: dict[str, list[float]] = {"fp32": [], "int8": []}
    with tempfile.TemporaryDirectory() as tmp:
        chosen = [b for b in grid() if b.kind not in CHAIN_KINDS][:blocks]
        log(f"drift probe: re-time the kernels of {len(chosen)} calibration blocks")
        kernels = [k for b in chosen for k in cut_block(b, Path(tmp))]
        rows, _, _ = time_batch(kernels, Path(tmp), timer, log)
    for r in rows:
        if (r.block, r.kernel, r.features) in then:
            ratios[r.kernel.rpartition(":")[2]].append(r.ms / then[(r.block, r.kernel, r.features)])
    return {p: statistics.median(v) for p, v in ratios.items() if v}


def _artifact(folder: Path, label: str, precision: str) -> Path:
    """Where a variant's converted file waits to be measured."""
    return folder / f"{label}-{precision}.tflite"


def measured(rows: list[dict[str, Any]], folder: Path, *, repeats: int) -> None:
    """Each variant measured ``repeats`` times in interleaved rounds (every variant once
    per round, so that a slow spell of this VM spreads over all of them), then its
    median and error."""
    from device_profiles.predictor import error_pct

    for round_ in range(repeats):
        log(f"measure round {round_ + 1} of {repeats}: {len(rows)} variants")
        for r in rows:
            r["measured_reps"] += measure(_artifact(folder, r["model"], r["precision"]), 1)
    for r in rows:
        r["measured_ms"] = statistics.median(r["measured_reps"])
        r["error_pct"] = error_pct(r["predicted_ms"], r["measured_ms"])
        r["fastest_ms"] = min(r["measured_reps"])
        r["fastest_error_pct"] = error_pct(r["predicted_ms"], r["fastest_ms"])
        log(f"{r['model']} {r['precision']}: predicted {r['predicted_ms']:.2f} ms, measured "
            f"{r['measured_ms']:.2f} ms ({r['error_pct']:+.1f}%)")


def render(rows: list[dict[str, Any]], by_precision: dict[str, Any], done: Any,
           calibration_s: float, args: argparse.Namespace, drift: dict[str, float],
           noise: dict[str, float]) -> str:
    lines = ["## Latency prediction from measured kernels (host, held-out zoo)", "",
             f"`python scripts/bench_predict.py --repeats {args.repeats} --budget-min "
             f"{args.budget_min:g}{' --quick' if args.quick else ''}"
             f"{' --resume' if args.resume else ''}`. The kernel table: "
             f"{len(done.table.blocks)} calibration blocks, {len(done.table.rows)} kernels, "
             f"{len(done.table.chains)} chains timed whole, fp32 and int8, {THREADS} threads, "
             f"{done.table.runtime} (calibrating took {done.table.seconds / 60:.1f} min of "
             f"batches here; this run {calibration_s / 60:.1f} min including the rest). "
             "No zoo network is in the table: every variant below is predicted from kernels "
             "alone, then measured with LiteRT's benchmark tool in "
             f"{args.repeats} fresh processes in interleaved rounds, 30 runs each: the "
             "median of the processes, and the fastest process (the statistic of each "
             "kernel in the table, whose three processes are reduced the same way). The "
             "drift probe re-timed the kernels of the grid's first blocks after the zoo: "
             + ", ".join(f"{p} {100 * (v - 1):+.0f}%" for p, v in drift.items())
             + " against the table (the machine's own drift, in the errors below). The "
             "machine's own reproducibility: one process of a variant lies within ±10% of the "
             "median of its other processes in " + ", ".join(
                 f"{share:.0%} ({p})" for p, share in noise.items()) + " of cases.", "",
             "| precision | measured as | variants | within ±10% | within ±20% | RMSPE | median "
             "abs. error | Spearman(predicted, measured) | Spearman(MACs, measured) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for precision, by_statistic in by_precision.items():
        for statistic, s in by_statistic.items():
            lines.append(f"| {precision} | {LABELS[statistic]} | {s['variants']} | "
                         f"{s['within_10']:.0%} | {s['within_20']:.0%} | {s['rmspe']:.1f}% | "
                         f"{s['median_abs_error_pct']:.1f}% | {s['spearman_predicted']:.3f} | "
                         f"{s['spearman_macs']:.3f} |")
    lines += ["", "<details><summary>every variant</summary>", "",
              "| model | precision | MACs | predicted ms | measured ms, median [fastest-slowest] "
              "| error to the median | to the fastest |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        reps = r["measured_reps"]
        lines.append(f"| {r['model']} | {r['precision']} | {r['macs'] / 1e6:.0f}M | "
                     f"{r['predicted_ms']:.2f}{' (lower bound)' if r['lower_bound'] else ''} | "
                     f"{r['measured_ms']:.2f} [{min(reps):.2f}-{max(reps):.2f}] | "
                     f"{r['error_pct']:+.1f}% | {r['fastest_error_pct']:+.1f}% |")
    lines += ["", "</details>", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
