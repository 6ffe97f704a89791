"""Structured pruning, measured: MACs, params, accuracy and host latency.

    python scripts/bench_prune.py [--resolution 64] [--epochs 15] [--tune 5] [--repeats 5]

MobileNet V2 and ShuffleNet V2 1.0 are trained here on scikit-learn's digits
(upsampled to --resolution, a seeded stratified 80/20 split; nothing downloaded), then
pruned with `mobilectl prune` (L1 and FPGM, 25/50/75% of each group's filters),
fine-tuned for --tune epochs, exported to fp32 and int8 TFLite through `mobilectl
export`, and timed with LiteRT on this host (1 thread, interleaved repetitions, the
unpruned model in every repetition).

Writes ``bench/prune.json`` and ``bench/prune.md`` and puts the latter into
BENCHMARKS.md between its prune markers.
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

from bench_common import STATS_NOTE, log, ms_cell, publish, ratio_cell  # noqa: E402  (scripts/ helpers)

MODELS = ("mobilenet_v2", "shufflenet_v2")
RATIOS = (0.25, 0.5, 0.75)
METHODS = ("l1", "fpgm")
START, END = "<!-- prune -->", "<!-- /prune -->"


def digits(work: Path, resolution: int) -> tuple[Path, Path, Path]:
    """Train and validation .npz of the digits at ``resolution``, and calibration pixels."""
    from models_keras.training import digits_pixels
    from quant.labelled import Labelled, split

    pixels, labels = digits_pixels()
    scale = resolution // pixels.shape[1]
    pixels = np.repeat(np.repeat(pixels, scale, axis=1), scale, axis=2)
    index = np.arange(len(labels), dtype=np.float32)[:, None, None, None]
    parts = split(Labelled("digits", tuple(map(str, range(10))), index, labels), val_split=0.2)
    train = parts.train.x[:, 0, 0, 0].astype(int)
    val = parts.val.x[:, 0, 0, 0].astype(int)
    paths = work / "train.npz", work / "val.npz", work / "calib.npy"
    np.savez(paths[0], x=pixels[train], y=labels[train])
    np.savez(paths[1], x=pixels[val], y=labels[val])
    np.save(paths[2], pixels[train][:64])
    return paths


def train(name: str, train_npz: Path, *, resolution: int, epochs: int, work: Path) -> Path:
    """The unpruned model: trained from scratch on the training part."""
    import keras

    from models_keras import build_model
    from models_keras.training import recalibrate_batch_norm

    data = np.load(train_npz)
    x = (data["x"].astype(np.float32) - 127.5) / 127.5
    keras.utils.set_random_seed(0)
    model = build_model(name, resolution=resolution, num_classes=10)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
    log(f"train {name} for {epochs} epochs")
    model.fit(x, data["y"], epochs=epochs, batch_size=64, verbose=0)
    recalibrate_batch_norm(model, x)
    path = work / f"{name}.weights.h5"
    model.save_weights(path)
    return path


def prune_all(name: str, weights: Path, paths: tuple[Path, Path, Path], *, resolution: int,
              tune: int, work: Path) -> list[dict[str, Any]]:
    from mobilectl.prune import PruneOptions, prune
    from quant.pruning import Method

    rows = []
    for method in METHODS:
        for ratio in RATIOS:
            log(f"prune {name} {method} {ratio:.0%}")
            out = work / f"{name}-{method}-{int(ratio * 100)}.keras"
            report = prune(name, data=str(paths[0]), val=str(paths[1]), out=out,
                           knobs={"resolution": resolution, "num_classes": 10},
                           weights=str(weights), options=PruneOptions(Method(method), ratio, tune))
            rows.append({"model": name, "method": method, "ratio": ratio, "keras": out,
                         **report.as_dict()})
    return rows


def export_and_time(rows: list[dict[str, Any]], bases: dict[str, dict[str, Any]],
                    calib: Path, *, repeats: int, runs: int, work: Path) -> None:
    """fp32 and int8 TFLite of every model (the unpruned ones too), timed interleaved."""
    from exporter.pipeline import ExportOptions, Thresholds, export

    lenient = Thresholds(min_cosine=0.0, min_sqnr_db=-100.0, min_top1=0.0, max_abs_error=1.0)
    files = []
    for row in [*bases.values(), *rows]:
        for precision in ("fp32", "int8"):
            target = str(row["keras"]) if "keras" in row else row["model"]
            knobs = None if "keras" in row else row["knobs"]
            done = export(target, knobs=knobs, weights=row.get("weights"),
                          out=work / "artifacts", options=ExportOptions(
                              precision=precision, formats=("tflite",), calib=str(calib),
                              calib_samples=64, thresholds=lenient))
            (entry,) = done.entries
            row.setdefault("files", {})[precision] = {"path": work / "artifacts" / entry.path,
                                                       "bytes": entry.bytes}
            files.append(row["files"][precision])
    for f in files:
        f["ms"] = {}
    measure_one_thread(files, repeats=repeats, runs=runs)


def measure_one_thread(files: list[dict[str, Any]], *, repeats: int, runs: int) -> None:
    from device_profiles import host

    for r in range(repeats):
        log(f"latency repetition {r + 1}/{repeats}")
        for f in files:
            done = host.run_artifact(f["path"], threads=1, runs=runs, warmup=5)
            f["ms"].setdefault(1, []).append(done.latency.median_ms)


def markdown(rows: list[dict[str, Any]], bases: dict[str, dict[str, Any]],
             s: dict[str, Any]) -> str:
    lines = ["## Structured pruning: MACs, accuracy and latency", "",
             f"`python scripts/bench_prune.py` ({s['repeats']} interleaved repetitions, each "
             f"the median of {s['runs']} runs after 5 warm-up runs, LiteRT, 1 thread; "
             f"{STATS_NOTE}; {s['wall_time_s'] / 60:.1f} min). The digits at "
             f"{s['resolution']}x{s['resolution']}, trained {s['epochs']} epochs from scratch "
             f"on 80%, top-1 on the other 20% ({s['val_samples']} images); pruned models "
             f"fine-tuned {s['tune']} epochs. Ratio: the share of each group's filters removed.",
             "", "| model | method | ratio | MACs | removed | params | top-1 pruned | "
             "top-1 tuned | drop | fp32 ms | int8 ms | int8 speed-up |", "|" + "---|" * 12]
    for name, base in bases.items():
        lines.append(f"| {name} | - | 0 | {base['macs'] / 1e6:.1f}M | - | "
                     f"{base['params'] / 1e6:.2f}M | - | {base['top1']:.3f} | - "
                     f"| {ms_cell(base['files']['fp32']['ms'][1])} "
                     f"| {ms_cell(base['files']['int8']['ms'][1])} | 1 |")
        for r in (r for r in rows if r["model"] == name):
            after, macs = r["after"], r["after"]["macs"]
            lines.append(
                f"| {name} | {r['method']} | {r['ratio']:g} | {macs / 1e6:.1f}M "
                f"| {1 - macs / base['macs']:.0%} | {after['params'] / 1e6:.2f}M "
                f"| {r['pruned']['top1']:.3f} | {after['top1']:.3f} "
                f"| {base['top1'] - after['top1']:+.3f} | {ms_cell(r['files']['fp32']['ms'][1])} "
                f"| {ms_cell(r['files']['int8']['ms'][1])} "
                f"| {ratio_cell(base['files']['int8']['ms'][1], r['files']['int8']['ms'][1], suffix='x')} |")
    return "\n".join(lines) + "\n"


def digits_arguments(doc: str) -> argparse.Namespace:
    """The flags of the benchmarks that train on the digits, then prune and time."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--tune", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=30)
    return parser.parse_args()


def main() -> None:
    args = digits_arguments(__doc__)
    from mobilectl.core.tfenv import import_quietly

    import_quietly()
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="mobilectl-prune-"))
    paths = digits(work, args.resolution)
    rows, bases = [], {}
    for name in MODELS:
        weights = train(name, paths[0], resolution=args.resolution, epochs=args.epochs, work=work)
        pruned = prune_all(name, weights, paths, resolution=args.resolution, tune=args.tune,
                           work=work)
        before = pruned[0]["before"]
        bases[name] = {"model": name, "knobs": {"resolution": args.resolution, "num_classes": 10},
                       "weights": str(weights), **before}
        rows += pruned
    export_and_time(rows, bases, paths[2], repeats=args.repeats, runs=args.runs, work=work)
    settings = {"repeats": args.repeats, "runs": args.runs, "resolution": args.resolution,
                "epochs": args.epochs, "tune": args.tune, "val_samples": rows[0]["val_samples"],
                "wall_time_s": time.perf_counter() - started}
    files = [f for r in [*bases.values(), *rows] for f in r["files"].values()]
    publish(ROOT, "prune", markdown(rows, bases, settings),
            {"settings": settings, "rows": _plain(rows), "bases": _plain(list(bases.values()))},
            files, start=START, end=END)
    log(f"done in {settings['wall_time_s'] / 60:.1f} min")


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without paths and file objects, for the JSON."""
    keep = []
    for r in rows:
        plain = {k: v for k, v in r.items() if k not in ("keras", "files")}
        plain["files"] = {p: {"bytes": f["bytes"], "ms": f["ms"]} for p, f in r["files"].items()}
        keep.append(plain)
    return keep


if __name__ == "__main__":
    main()
