"""Shared test setup: TensorFlow's native logging off, and a small model trained on
the digits. TensorFlow itself is imported only by the test modules that need it."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

DIGITS_KNOBS = {"width_multiplier": 0.25, "resolution": 32, "num_classes": 10}


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """MobileNet V1 0.25 trained for 12 epochs on the digits: a model whose weights
    are not noise, so int8 verification means something. Batch-norm statistics are
    recomputed on the training set after fitting (momentum 0.999 would need far more
    steps to settle)."""
    import keras

    from models_keras import build_model
    from models_keras.training import digits_pixels, recalibrate_batch_norm

    pixels, labels = digits_pixels()
    x = (pixels.astype(np.float32) - 127.5) / 127.5
    keras.utils.set_random_seed(0)
    model = build_model("mobilenet_v1", dropout=0.0, **DIGITS_KNOBS)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:1400], labels[:1400], epochs=12, batch_size=64, verbose=0)
    recalibrate_batch_norm(model, x[:1400])
    accuracy = float(model.evaluate(x[1400:], labels[1400:], verbose=0)[1])
    root = tmp_path_factory.mktemp("digits")
    weights = root / "mobilenet_v1.weights.h5"
    model.save_weights(weights)
    calib = root / "digits_calib.npy"
    np.save(calib, pixels[1400:1700])  # uint8 pixels the model was not trained on
    return {"knobs": dict(DIGITS_KNOBS), "weights": str(weights), "calib": str(calib),
            "accuracy": accuracy}


@pytest.fixture(scope="session")
def digits_npz(tmp_path_factory: pytest.TempPathFactory):
    """All 1797 digits as a labelled .npz (uint8 pixels ``x``, labels ``y``)."""
    from models_keras.training import digits_pixels

    pixels, labels = digits_pixels()
    path = tmp_path_factory.mktemp("digits_npz") / "digits.npz"
    np.savez(path, x=pixels, y=labels)
    return path


from adb_device.fixtures import adb_server, benchmark_binary, connect_device  # noqa: E402,F401
