"""The swish fusion the latency predictor models (``device_profiles/kernels.py``): what
an int8 and a float ``MUL(x, LOGISTIC(x))`` cost alone and inside a graph on this machine.

Three blocks at 112 x 112 px: a 1x1 conv from 16 to 96 channels, then nothing, a sigmoid
or a swish, then a 1x1 conv back to 16 channels; each converted to fp32 and int8 as
``export`` converts. The MUL's cost in a graph is the swish block less the sigmoid
block, the sigmoid's the sigmoid block less the plain one.
Alone: the swish block's MUL, its LOGISTIC and the pair, each cut into a model of its
own as the calibration cuts kernels. Every file is timed by the calibration's own timer
(``device_profiles.kernel_bench`` in fresh processes, 2 threads), ``--rounds`` times; a
file's figure is its fastest process, as a kernel's in the table (an interpreter here
runs either at full speed or about 2x slower, as on one thread), its median beside it.

Usage: python scripts/bench_fusion.py [--rounds 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from bench_common import log, publish  # noqa: E402

START, END = "<!-- bench: fusion -->", "<!-- /bench: fusion -->"
SIDE, WIDE = 112, 96
BLOCKS = ("plain", "sigmoid", "swish")


def block(kind: str) -> Any:
    """1x1 conv up, ``kind`` of activation, 1x1 conv down."""
    import keras

    inputs = keras.Input((SIDE, SIDE, 16), name="input")
    x = keras.layers.Conv2D(WIDE, 1, name="up")(inputs)
    if kind != "plain":
        x = keras.layers.Activation(kind, name="act")(x)
    return keras.Model(inputs, keras.layers.Conv2D(16, 1, name="down")(x))


def files(folder: Path, precision: Any) -> dict[str, Path]:
    """The three blocks and the swish's MUL, LOGISTIC and pair alone, written to
    ``folder``."""
    import numpy as np

    from device_profiles.kernels import kernel_ops
    from device_profiles.op_bench import group_models
    from exporter import tflite

    calibration = np.random.default_rng(0).normal(size=(8, SIDE, SIDE, 16)).astype("float32")
    found = {}
    for kind in BLOCKS:
        data = tflite.convert(block(kind), precision=precision, calibration=calibration)
        found[kind] = folder / f"{kind}.{precision}.tflite"
        found[kind].write_bytes(data)
    data = found["swish"].read_bytes()
    ops = {op.op: op.index for op in kernel_ops(data)}
    alone = {"MUL": [ops["MUL"]], "LOGISTIC": [ops["LOGISTIC"]],
             "pair": [ops["LOGISTIC"], ops["MUL"]]}
    for name, cut in zip(alone, group_models(data, list(alone.values()))):
        if cut is None:
            raise SystemExit(f"the swish block's {name} does not stand alone")
        found[name] = folder / f"{name}.{precision}.tflite"
        found[name].write_bytes(cut)
    return found


def timed(paths: dict[str, Path], rounds: int) -> dict[str, list[float]]:
    """Each file's median in every process of ``rounds`` rounds, in process order."""
    from mobilectl.calibrate import HostTimer

    timer = HostTimer(threads=2)
    times: dict[str, list[float]] = {name: [] for name in paths}
    for r in range(rounds):
        log(f"round {r + 1} of {rounds}: {len(paths)} files")
        found = timer.time(list(paths.values()), log)
        for name, path in paths.items():
            times[name] += list(found[path.name])
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    from mobilectl.core.tfenv import import_quietly

    import_quietly()
    from mobilectl.core.types import Precision

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in (Precision.FP32, Precision.INT8):
            log(f"convert and cut the blocks, {precision}")
            rows[str(precision)] = timed(files(Path(tmp), precision), args.rounds)
    text = render(rows, args)
    print(text)
    publish(ROOT, "fusion", text, {"ms": rows}, [], start=START, end=END)


def _less(times: dict[str, list[float]], top: str, bottom: str) -> str:
    """The fastest process of ``top`` less that of ``bottom``, in ms."""
    return f"{min(times[top]) - min(times[bottom]):.3f}"


def render(rows: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> str:
    processes = len(next(iter(rows.values()))["MUL"])
    lines = ["## Swish in a graph: the fusion the latency predictor models", "",
             f"`python scripts/bench_fusion.py --rounds {args.rounds}`: a 1x1 conv (16 to "
             f"{WIDE} channels) at {SIDE} x {SIDE} px, then nothing, a sigmoid or a swish "
             f"({SIDE * SIDE * WIDE / 1e6:.1f}M elements), then a 1x1 conv back; in a graph, "
             "the swish block less the sigmoid block (the MUL) and the sigmoid block less "
             "the plain one (the LOGISTIC); alone, the ops cut from the swish block as the "
             f"calibration cuts kernels. {processes} fresh processes of the calibration's "
             "timer per file, 2 threads; in ms, the fastest process (the kernel table's "
             "statistic: an interpreter here runs either at full speed or about 2x slower, "
             "as on one thread) and the median of the processes in brackets.", "",
             "| precision | MUL alone | LOGISTIC alone | LOGISTIC + MUL alone | MUL in the graph "
             "| LOGISTIC in the graph |", "|---|---|---|---|---|---|"]
    for precision, times in rows.items():
        lines.append(f"| {precision} | {_cell(times['MUL'])} | {_cell(times['LOGISTIC'])} | "
                     f"{_cell(times['pair'])} | {_less(times, 'swish', 'sigmoid')} | "
                     f"{_less(times, 'sigmoid', 'plain')} |")
    return "\n".join(lines + [""])


def _cell(values: list[float]) -> str:
    """``fastest [median]`` of the processes, in ms to the microsecond."""
    return f"{min(values):.3f} [{statistics.median(values):.3f}]"


if __name__ == "__main__":
    main()
