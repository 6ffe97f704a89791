"""Labelled data and ``mobilectl eval``: accuracy of each artifact as it runs, next to
its Keras float model, on the digits (a model trained here, nothing downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import error_line, run
from mobilectl.core.manifest import Normalization, read_manifest
from quant.labelled import check_data, load_labelled, split

HELD_OUT = slice(1400, None)  # the digits the fixture's model was not trained on


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from models_keras.training import digits_pixels

    return digits_pixels()


def _folder(root: Path, pixels: np.ndarray, labels: np.ndarray, names: list[str]) -> Path:
    for i, (image, label) in enumerate(zip(pixels, labels)):
        folder = root / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:04d}.png")
    return root


def test_image_folder_and_npz_give_the_same_inputs(tmp_path: Path) -> None:
    pixels, labels = _digits()
    names = [f"digit{d}" for d in range(10)]
    folder = _folder(tmp_path / "images", pixels[:60], labels[:60], names)
    np.savez(tmp_path / "d.npz", x=pixels[:60], y=labels[:60])
    norm = Normalization()
    images = load_labelled(str(folder), resolution=32, normalization=norm)
    array = load_labelled(str(tmp_path / "d.npz"), resolution=32, normalization=norm)
    assert images.classes == tuple(names) and array.classes == tuple(str(d) for d in range(10))
    # the folder is read class by class: the same images, grouped by label
    order = np.argsort(labels[:60], kind="stable")
    assert np.array_equal(images.y, labels[:60][order])
    assert np.allclose(images.x, array.x[order], atol=1e-6)
    assert images.x.dtype == np.float32 and -1.0 <= images.x.min() < images.x.max() <= 1.0
    # a labels file sets the order of the classes (the model's output order)
    (tmp_path / "labels.txt").write_text("\n".join(reversed(names)) + "\n")
    flipped = load_labelled(str(folder), resolution=32, normalization=norm,
                            labels=tuple(reversed(names)))
    assert flipped.classes == tuple(reversed(names))
    assert np.array_equal(np.sort(flipped.y), np.sort(9 - images.y))


def test_split_is_seeded_stratified_and_disjoint() -> None:
    from quant.labelled import Labelled

    _, labels = _digits()
    ids = np.arange(len(labels), dtype=np.float32)  # each row says which sample it is
    data = Labelled("digits", tuple(str(d) for d in range(10)),
                    np.broadcast_to(ids[:, None, None, None], (len(ids), 2, 2, 3)).copy(),
                    labels.astype(np.int64))
    a, b = split(data, val_split=0.2), split(data, val_split=0.2)
    assert np.array_equal(a.val.y, b.val.y) and a.val.sha256 == b.val.sha256
    val, train = set(a.val.x[:, 0, 0, 0].tolist()), set(a.train.x[:, 0, 0, 0].tolist())
    assert not val & train and len(val | train) == len(labels)
    assert abs(len(val) - 0.2 * len(labels)) <= 10
    assert np.bincount(a.val.y, minlength=10).min() >= 30  # every class in its share (~36)
    assert split(data, val_split=0.2, seed=1).val.sha256 != a.val.sha256


@pytest.mark.parametrize("case, message", [
    ("one_class", "1 class folder(s) (only); at least 2 needed"),
    ("empty_class", "class folder 'b' holds no images"),
    ("labels_mismatch", "class 'c' has no folder"),
    ("npz_no_y", "x (images) and y (labels) are needed"),
    ("npz_bad_label", "label 12 is not allowed: 0 to 9 (the classes of --labels)"),
    ("npz_objects", "cannot be read without pickle"),
    ("missing", "no such file or directory"),
])
def test_bad_labelled_data_is_one_line(tmp_path: Path, case: str, message: str) -> None:
    from mobilectl.core.errors import UserError

    pixels = np.zeros((4, 32, 32, 3), np.uint8)
    labels = None
    if case == "one_class":
        _folder(tmp_path / "d", pixels, np.zeros(4, int), ["only"])
    elif case in ("empty_class", "labels_mismatch"):
        _folder(tmp_path / "d", pixels, np.zeros(4, int), ["a"])
        (tmp_path / "d" / "b").mkdir()
        if case == "labels_mismatch":
            Image.fromarray(pixels[0]).save(tmp_path / "d" / "b" / "x.png")
            labels = ("a", "b", "c")
    elif case == "npz_no_y":
        np.savez(tmp_path / "d.npz", x=pixels)
    elif case == "npz_bad_label":
        np.savez(tmp_path / "d.npz", x=pixels, y=np.array([0, 1, 2, 12]))
        labels = tuple(str(i) for i in range(10))
    elif case == "npz_objects":
        np.savez(tmp_path / "d.npz", x=pixels, y=np.array([0, "a", None, 1], dtype=object))
    given = str(tmp_path / ("d.npz" if case.startswith("npz") else "d"))
    with pytest.raises(UserError) as raised:
        check_data(given, labels=labels)
    assert message in str(raised.value)


@pytest.fixture(scope="module")
def exported(digits_model: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fp32 and int8 TFLite and ONNX of the trained digits model, with a manifest."""
    from exporter.options import ExportOptions
    from exporter.pipeline import export
    from mobilectl.core.types import Format, Precision

    out = tmp_path_factory.mktemp("eval")
    for precision in (Precision.FP32, Precision.INT8):
        export("mobilenet_v1", knobs=digits_model["knobs"], weights=digits_model["weights"],
               options=ExportOptions(formats=(Format.TFLITE, Format.ONNX), precision=precision,
                                     calib=digits_model["calib"], calib_samples=48),
               out=out)
    pixels, labels = _digits()
    np.savez(out / "held_out.npz", x=pixels[HELD_OUT], y=labels[HELD_OUT])
    shuffled = np.random.default_rng(0).permutation(labels[HELD_OUT])
    np.savez(out / "shuffled.npz", x=pixels[HELD_OUT], y=shuffled)
    return out


def test_eval_measures_each_artifact_and_records_it(exported: Path, digits_model: dict,
                                                    capsys) -> None:
    code, out, err = run(["eval", str(exported), "--data", str(exported / "held_out.npz"),
                          "--json"], capsys)
    assert code == 0, err
    rows = {r["artifact"]: r for r in json.loads(out)["results"]}
    assert len(rows) == 4 and {r["samples"] for r in rows.values()} == {397}
    for name, r in rows.items():
        # the float model is the fixture's own: its accuracy, measured again here
        assert r["float_top1"] == pytest.approx(digits_model["accuracy"], abs=1e-6), name
        assert r["top1"] > 0.6 and r["top5"] >= r["top1"]  # chance is 0.1
        limit = 1e-6 if r["precision"] == "fp32" else 0.05  # fp32 files are the float model
        assert abs(r["top1_drop"]) <= limit, (name, r)
    recorded = {e.path: e.accuracy for e in read_manifest(exported).artifacts}
    assert all(recorded[name].top1 == pytest.approx(r["top1"], abs=1e-6)
               for name, r in rows.items())
    # labels that do not belong to the images: accuracy near chance, not a fixed number
    code, out, err = run(["eval", str(exported), "--data", str(exported / "shuffled.npz"),
                          "--json", "--no-record"], capsys)
    assert code == 0, err
    assert all(r["top1"] < 0.25 for r in json.loads(out)["results"])
    assert read_manifest(exported).artifacts[0].accuracy.top1 > 0.6  # not recorded


def test_eval_table_and_one_artifact(exported: Path, capsys) -> None:
    file = next(p for p in exported.glob("*int8.tflite"))
    code, out, err = run(["eval", str(file), "--data", str(exported / "held_out.npz"),
                          "--val-split", "0.5"], capsys)
    assert code == 0, err
    assert file.name in out and "200 samples" in out and "top-1" in out and " pt " in out


def test_eval_bad_input(exported: Path, tmp_path: Path, capsys) -> None:
    pixels, labels = _digits()
    np.savez(tmp_path / "three.npz", x=pixels[labels < 3][:30], y=labels[labels < 3][:30])
    data = str(exported / "held_out.npz")
    cases = [
        (["--data", str(tmp_path / "three.npz")], "3 classes, but"),
        (["--data", data, "--val-split", "1.5"], "--val-split 1.5 is not allowed"),
        (["--data", str(tmp_path / "none")], "no such file or directory"),
        (["--data", data, "--val", data, "--val-split", "0.2"], "give one of them"),
        (["--data", data, "--keras", str(tmp_path / "nope.keras")], "--keras"),
    ]
    before = (exported / "manifest.json").read_bytes()
    for flags, message in cases:
        code, _, err = run(["eval", str(exported), *flags], capsys)
        assert message in error_line(code, err), (flags, err)
    code, _, err = run(["eval", str(tmp_path / "x.tflite"), "--data", data], capsys)
    assert "no such file" in error_line(code, err)
    assert (exported / "manifest.json").read_bytes() == before  # nothing written


def test_build_gates_on_accuracy(digits_model: dict, tmp_path: Path, capsys) -> None:
    pixels, labels = _digits()
    np.savez(tmp_path / "held_out.npz", x=pixels[HELD_OUT], y=labels[HELD_OUT])
    spec = f"""
[[artifact]]
name = "digits"
model = "mobilenet_v1"
knobs = {{ width_multiplier = 0.25, resolution = 32, num_classes = 10 }}
weights = "{digits_model['weights']}"
calib = "{digits_model['calib']}"
calib_samples = 16
precisions = ["int8"]
formats = ["tflite"]
[artifact.eval]
data = "held_out.npz"
max_top1_drop = 0.05
min_top1 = MIN
"""
    argv = ["build", str(tmp_path / "mobilectl.toml"), "--out", str(tmp_path / "dist"),
            "--cache", str(tmp_path / "cache"), "--json"]
    (tmp_path / "mobilectl.toml").write_text(spec.replace("MIN", "0.5"))
    code, out, err = run(argv, capsys)
    assert code == 0, err
    [job] = json.loads(out)["jobs"]
    checks = {c["metric"]: c for c in job["budgets"]}
    assert checks["top1"]["ok"] and checks["top1"]["value"] > 0.6
    assert checks["top1_drop"]["ok"] and abs(checks["top1_drop"]["value"]) <= 0.05
    [entry] = read_manifest(tmp_path / "dist").artifacts
    assert entry.accuracy.top1 == pytest.approx(checks["top1"]["value"])
    assert entry.accuracy.float_top1 == pytest.approx(digits_model["accuracy"], abs=1e-6)
    (tmp_path / "mobilectl.toml").write_text(spec.replace("MIN", "0.999"))
    code, out, err = run(argv, capsys)  # the export is reused; the gate is not
    assert code == 1 and "< 0.999 on" in err, err
    [job] = json.loads(out)["jobs"]
    assert job["status"] == "failed" and "top-1" in job["error"]
    (tmp_path / "mobilectl.toml").write_text(spec.replace("MIN", "1.5"))
    code, _, err = run(argv, capsys)
    assert "'artifact[0].eval.min_top1' = 1.5 is not allowed" in error_line(code, err)
