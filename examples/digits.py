"""A meaningful int8 artifact in a minute: train MobileNet V1 (width 0.25, 32x32) on
scikit-learn's handwritten digits (shipped inside scikit-learn, nothing downloaded),
save its weights and a calibration set of digits it was not trained on, then export
it with mobilectl, verified against the float model.

    pip install -e '.[test]' && python examples/digits.py [--out DIR]

It prints the float model's accuracy on held-out digits, then runs (and shows)

    mobilectl export mobilenet_v1 -w 0.25 -r 32 --num-classes 10 \\
        --weights DIR/mobilenet_v1.weights.h5 --calib DIR/calib.npy --int8 --out DIR/artifacts

A registry model exported without --weights has freshly initialised weights, whose
near-uniform outputs int8 rounds to a constant: this is the way to a real artifact.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

from mobilectl.core.tfenv import import_quietly

KNOBS = {"width_multiplier": 0.25, "resolution": 32, "num_classes": 10}
TRAIN = 1400  # of the 1797 digits; the rest are held out (calibration, accuracy)


def train(out: Path, *, epochs: int) -> tuple[Path, Path, float]:
    """Train, recalibrate batch norm, save weights and calibration pixels."""
    import_quietly()
    import keras

    from models_keras import build_model
    from models_keras.training import digits_pixels, recalibrate_batch_norm

    pixels, labels = digits_pixels()
    x = (pixels.astype(np.float32) - 127.5) / 127.5  # the zoo's normalisation
    keras.utils.set_random_seed(0)
    model = build_model("mobilenet_v1", dropout=0.0, **KNOBS)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:TRAIN], labels[:TRAIN], epochs=epochs, batch_size=64, verbose=0)
    recalibrate_batch_norm(model, x[:TRAIN])
    accuracy = float(model.evaluate(x[TRAIN:], labels[TRAIN:], verbose=0)[1])
    out.mkdir(parents=True, exist_ok=True)
    weights, calib = out / "mobilenet_v1.weights.h5", out / "calib.npy"
    model.save_weights(weights)
    np.save(calib, pixels[TRAIN:])  # uint8 pixels: mobilectl normalises them
    return weights, calib, accuracy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="digits", help="folder for weights, data, artifacts")
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args(argv)
    out = Path(args.out)
    weights, calib, accuracy = train(out, epochs=args.epochs)
    print(f"float model: {accuracy:.1%} top-1 on {1797 - TRAIN} held-out digits")
    command = ["export", "mobilenet_v1", "-w", "0.25", "-r", "32", "--num-classes", "10",
               "--weights", str(weights), "--calib", str(calib), "--int8",
               "--out", str(out / "artifacts")]
    print("$ mobilectl " + " ".join(shlex.quote(word) for word in command), flush=True)
    from mobilectl.cli import main as mobilectl

    try:
        mobilectl(command)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
