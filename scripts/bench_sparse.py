"""Magnitude pruning, measured: accuracy, file size and host latency, dense against
TFLite's sparse encoding.

    python scripts/bench_sparse.py [--resolution 64] [--epochs 15] [--tune 5] [--repeats 5]

Part 1, accuracy: MobileNet V2 is trained here on scikit-learn's digits (upsampled to
--resolution, the seeded stratified 80/20 split of bench_prune.py; nothing
downloaded), then pruned with `mobilectl prune --method magnitude` at 50/75/90%
sparsity and fine-tuned for --tune epochs with the mask held.

Part 2, what the encoding buys: MobileNet V2 at 224x224 (fresh weights: latency and
size do not depend on training), each kernel's smallest 50/75/90% of weights zeroed,
exported to fp32 TFLite dense and with `--sparse`, and timed with LiteRT on this host
(1 thread, interleaved repetitions). The XNNPACK lint of each sparse file says
whether it would run sparse on this host and on an arm64 phone.

Writes ``bench/sparse.json`` and ``bench/sparse.md`` and puts the latter into
BENCHMARKS.md between its sparse markers.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_common import STATS_NOTE, log, ms_cell, publish, ratio_cell  # noqa: E402  (scripts/ helpers)
from bench_prune import digits, digits_arguments, measure_one_thread, train  # noqa: E402

MODEL = "mobilenet_v2"
SPARSITIES = (0.5, 0.75, 0.9)
START, END = "<!-- sparse -->", "<!-- /sparse -->"
PHONE_ARCH = "arm64-v8a"


def accuracy(paths: tuple[Path, Path, Path], weights: Path, *, resolution: int, tune: int,
             work: Path) -> list[dict[str, Any]]:
    """`mobilectl prune --method magnitude` at each sparsity, on the trained model."""
    from mobilectl.prune import PruneOptions, prune
    from quant.pruning import Method

    rows = []
    for share in SPARSITIES:
        log(f"prune {MODEL} magnitude {share:.0%}")
        report = prune(MODEL, data=str(paths[0]), val=str(paths[1]),
                       out=work / f"{MODEL}-magnitude-{int(share * 100)}.keras",
                       knobs={"resolution": resolution, "num_classes": 10}, weights=str(weights),
                       options=PruneOptions(Method.MAGNITUDE, epochs=tune, sparsity=share))
        rows.append({"sparsity": share, **report.as_dict()})
    return rows


#: (input size, sparsity) of the size-and-speed rows: 224 at each sparsity (0: unpruned),
#: and 225, where TFLite's SAME padding pads the stem 1 on each side as XNNPACK asks.
ENCODED = ((224, 0.0), *((224, share) for share in SPARSITIES), (225, SPARSITIES[-1]))


def encodings(work: Path) -> list[dict[str, Any]]:
    """MobileNet V2 at each row of :data:`ENCODED`, exported dense and sparse."""
    from exporter.pipeline import ExportOptions, build_or_load, export
    from mobilectl.core.manifest import Derivation
    from mobilectl.prune import save_keras
    from quant.sparsity import apply_masks, magnitude_masks

    rows = []
    for size, share in ENCODED:
        source = build_or_load(MODEL, knobs={"resolution": size}, seed=0)
        if share:
            apply_masks(source.model, magnitude_masks(source.model, sparsity=share))
        path = work / f"fresh-{size}-{int(share * 100)}.keras"
        save_keras(source.model, path, Derivation(MODEL, "magnitude", None, 0, "untrained",
                                                  source.normalization, share or None))
        row: dict[str, Any] = {"size": size, "sparsity": share, "files": {}}
        for sparse in (False, True):
            log(f"export {MODEL} {size} at {share:.0%} sparsity "
                f"({'sparse' if sparse else 'dense'})")
            done = export(str(path), out=work / f"art-{size}-{int(share * 100)}-{sparse}",
                          options=ExportOptions(formats=("tflite",), sparse=sparse))
            (entry,) = done.entries
            row["files"][sparse] = {"path": done.out / entry.path, "bytes": entry.bytes, "ms": {}}
        rows.append(row)
    return rows


def lints(rows: list[dict[str, Any]]) -> None:
    from device_profiles.sparse_lint import lint
    from quant.onnx_quant import host_arch

    for row in rows:
        data = row["files"][True]["path"].read_bytes()
        row["lint"] = {arch: lint(data, arch=arch).as_dict() for arch in (host_arch(), PHONE_ARCH)}


def markdown(tuned: list[dict[str, Any]], sizes: list[dict[str, Any]], s: dict[str, Any]) -> str:
    base = tuned[0]["before"]
    lines = ["## Magnitude pruning and TFLite's sparse encoding", "",
             f"`python scripts/bench_sparse.py` ({s['wall_time_s'] / 60:.1f} min). "
             f"Accuracy: {MODEL} trained {s['epochs']} epochs on the digits at "
             f"{s['resolution']}x{s['resolution']} (80%), top-1 on the other 20% "
             f"({tuned[0]['val_samples']} images); each kernel's smallest weights zeroed "
             f"(the stem and depthwise kernels stay dense), fine-tuned {s['tune']} epochs "
             "with the mask held.", "",
             "| sparsity | nonzero weights | top-1 pruned | top-1 tuned | drop |",
             "|---|---|---|---|---|",
             f"| 0 | {base['nonzero'] / 1e6:.2f}M | - | {base['top1']:.3f} | - |"]
    for r in tuned:
        after = r["after"]
        lines.append(f"| {r['sparsity']:g} | {after['nonzero'] / 1e6:.2f}M "
                     f"| {r['pruned']['top1']:.3f} | {after['top1']:.3f} "
                     f"| {base['top1'] - after['top1']:+.3f} |")
    dense0 = sizes[0]["files"][False]
    lines += ["", f"Size and speed: {MODEL} fp32 TFLite, dense and `--sparse`, "
              f"{s['repeats']} interleaved repetitions, each the median of {s['runs']} runs "
              f"after 5 warm-up runs, LiteRT, 1 thread; {STATS_NOTE}.", "",
              "| input | sparsity | dense MiB | sparse MiB | dense ms | sparse ms | sparse/dense "
              "time | 1x1 zeros | XNNPACK here | XNNPACK on arm64 |", "|" + "---|" * 10]
    for r in sizes:
        dense, sparse = r["files"][False], r["files"][True]
        here, phone = (r["lint"][a] for a in (s["host_arch"], PHONE_ARCH))
        lines.append(
            f"| {r['size']} | {r['sparsity']:g} | {dense['bytes'] / 2**20:.2f} "
            f"| {sparse['bytes'] / 2**20:.2f} "
            f"| {ms_cell(dense['ms'][1])} | {ms_cell(sparse['ms'][1])} "
            f"| {ratio_cell(sparse['ms'][1], dense['ms'][1], suffix='x')} "
            f"| {here['zero_share']:.0%} | {_verdict(here)} | {_verdict(phone)} |")
    lines += ["", f"Unpruned dense file at 224: {dense0['bytes'] / 2**20:.2f} MiB. "
              + _lint_note(sizes[-2]) + " " + _lint_note(sizes[-1])]
    return "\n".join(lines) + "\n"


def _verdict(found: dict[str, Any]) -> str:
    missed = [c["name"] for c in found["conditions"] if not c["met"]]
    return "sparse" if found["sparse"] else "dense (misses " + ", ".join(missed) + ")"


def _lint_note(row: dict[str, Any]) -> str:
    return (f"The lint of the {row['size']}x{row['size']} {row['sparsity']:g} file for an "
            f"arm64 phone: `{row['lint'][PHONE_ARCH]['line']}`.")


def main() -> None:
    args = digits_arguments(__doc__)
    from mobilectl.core.tfenv import import_quietly
    from quant.onnx_quant import host_arch

    import_quietly()
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="mobilectl-sparse-"))
    paths = digits(work, args.resolution)
    weights = train(MODEL, paths[0], resolution=args.resolution, epochs=args.epochs, work=work)
    tuned = accuracy(paths, weights, resolution=args.resolution, tune=args.tune, work=work)
    sizes = encodings(work)
    lints(sizes)
    files = [f for r in sizes for f in r["files"].values()]
    measure_one_thread(files, repeats=args.repeats, runs=args.runs)
    settings = {"repeats": args.repeats, "runs": args.runs, "resolution": args.resolution,
                "epochs": args.epochs, "tune": args.tune, "host_arch": host_arch(),
                "wall_time_s": time.perf_counter() - started}
    plain = [{"size": r["size"], "sparsity": r["sparsity"], "lint": r["lint"],
              "files": {("sparse" if k else "dense"): {"bytes": f["bytes"], "ms": f["ms"]}
                        for k, f in r["files"].items()}} for r in sizes]
    publish(ROOT, "sparse", markdown(tuned, sizes, settings),
            {"settings": settings, "accuracy": tuned, "encodings": plain}, files,
            start=START, end=END)
    log(f"done in {settings['wall_time_s'] / 60:.1f} min")


if __name__ == "__main__":
    main()
