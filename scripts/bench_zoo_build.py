"""Peak memory of building the whole zoo: the build process against its largest job.

    python scripts/bench_zoo_build.py

One ``mobilectl build --json`` in a fresh process: every family's representative at
its default resolution, fp32 and int8, TFLite and ONNX, fresh weights, an empty cache.
Every job runs in a fresh worker process; the build reports each worker's peak RSS,
and the build process's own high-water mark (``VmHWM``) is read while it runs. The
target: the whole build never needs more memory than its largest single job.

Writes ``bench/zoo_build.json`` and ``bench/zoo_build.md`` and puts the latter into
BENCHMARKS.md between its zoo-build markers.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_common import log, splice  # noqa: E402  (scripts/ helpers)

START, END = "<!-- zoo-build -->", "<!-- /zoo-build -->"


def spec_text() -> str:
    from models_keras.registry import family_representatives

    parts = ['[defaults]\nformats = ["tflite", "onnx"]\nprecisions = ["fp32", "int8"]\n'
             "calib_samples = 16\n"]
    for spec in family_representatives():
        parts.append(f'[[artifact]]\nname = "{spec.name}"\nmodel = "{spec.name}"\n'
                     "[artifact.thresholds]\nmin_cosine = 0.0\nmin_sqnr_db = -100.0\n"
                     "min_top1 = 0.0\n")  # fresh weights: int8 is measured, not gated
    return "\n".join(parts)


def main() -> None:
    from device_profiles.host import _run

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="mobilectl-zoo-build-"))
    spec = work / "zoo.toml"
    spec.write_text(spec_text())
    log("build the zoo (fresh worker per job)")
    stdout, _, parent_mb = _run([sys.executable, "-m", "mobilectl.cli", "build", str(spec),
                                 "--out", str(work / "out"), "--cache", str(work / "cache"),
                                 "--json", "--keep-going"], timeout=5400)
    jobs = json.loads(stdout)["jobs"]
    peaks = sorted(((j["peak_rss_mb"] or 0.0, j["artifact"]) for j in jobs), reverse=True)
    wall = time.perf_counter() - started
    text = "\n".join([
        "## Building the whole zoo: memory", "",
        f"`python scripts/bench_zoo_build.py`: one `mobilectl build` of {len(jobs)} jobs "
        "(every family's representative at its default resolution, fp32 and int8, TFLite "
        f"and ONNX, fresh weights, empty cache), {wall / 60:.1f} min.", "",
        "| process | peak RSS MB |", "|---|---|",
        f"| the build process itself (VmHWM) | {parent_mb:.0f} |",
        *(f"| worker: {name} | {mb:.0f} |" for mb, name in peaks[:3]),
        f"| worker: the smallest job ({peaks[-1][1]}) | {peaks[-1][0]:.0f} |", "",
        f"The build process peaks at {parent_mb:.0f} MB, {parent_mb / peaks[0][0]:.2f}x its "
        f"largest job's {peaks[0][0]:.0f} MB: each job's TensorFlow lives and dies in its "
        "own worker.", ""])
    (ROOT / "bench").mkdir(exist_ok=True)
    (ROOT / "bench" / "zoo_build.md").write_text(text)
    (ROOT / "bench" / "zoo_build.json").write_text(json.dumps(
        {"wall_time_s": wall, "build_process_peak_mb": parent_mb,
         "jobs": [{"job": n, "peak_rss_mb": mb} for mb, n in peaks]}, indent=2) + "\n")
    splice(text, ROOT / "BENCHMARKS.md", start=START, end=END)
    log(f"done in {wall / 60:.1f} min")


if __name__ == "__main__":
    main()
