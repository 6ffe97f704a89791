"""A catalogue of bad input across every command: each is one ``error:`` line naming
the bad value, exit code 2, no traceback, and nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import error_line, run

TINY = ["-w", "0.25", "-r", "32", "--num-classes", "10"]


def _files(root: Path) -> dict[str, str]:
    """Bad files of every kind, made once per test."""
    files = {}
    for name, data in (("garbage.tflite", b"not a flatbuffer" * 8), ("garbage.onnx", b"\x01\x02"),
                       ("truncated.keras", b"PK\x03\x04 cut short"), ("model.h5", b"\x89HDF"),
                       ("notes.txt", b"x"), ("spec.toml", b"[[artifact]\n"),
                       ("bad.toml", b"name = 1\n")):
        (root / name).write_bytes(data)
        files[name] = str(root / name)
    (root / "folder.keras").mkdir()
    (root / "empty").mkdir()
    np.savez(root / "object.npz", x=np.array([object(), 1], dtype=object))
    np.save(root / "flat.npy", np.zeros((4, 32), np.float32))
    for name in ("folder.keras", "empty", "object.npz", "flat.npy"):
        files[name] = str(root / name)
    return files


def _spec(root: Path, name: str, body: str) -> str:
    path = root / f"{name}.toml"
    path.write_text(body)
    return str(path)


TINY_KNOBS = "{ width_multiplier = 0.25, resolution = 32, num_classes = 10 }"


def _cases(f: dict[str, str], root: Path) -> list[tuple[list[str], str]]:
    """(argv without --out, the text the error line must hold)."""
    spec = lambda name, body: _spec(root, name, body)  # noqa: E731
    art = '[[artifact]]\nname = "a"\nmodel = "mobilenet_v1"\n'
    return [
        (["info", "nosuchnet"], "unknown model 'nosuchnet'"),
        (["info", "mobilenet_v1", "-w", "7"], "width_multiplier=7.0"),
        (["info", "mobilenet_v1", "-w", "abc"], "(got 'abc')"),
        (["info", "mobilenet_v1", "-r", "5"], "resolution=5"),
        (["info", "mobilenet_v1", "-r", "big"], "(got 'big')"),
        (["info", "mobilenet_v1", "--groups", "3"], "takes no knob 'groups'"),
        (["info", "shufflenet_v1", "--groups", "5"], "groups=5"),
        (["info", "mobilenet_v1", "--num-classes", "0"], "num_classes=0"),
        (["info", "nasnet_mobile", "--knob", "penultimate_filters=1000"],
         "penultimate_filters=1000"),
        (["info", "nasnet_mobile", "--knob", "cell_repeats"], "--knob 'cell_repeats'"),
        (["info", "mobilenet_v1", "--input-shape", "1,32,32,3"], "--input-shape applies"),
        (["info", f["garbage.tflite"]], "not a .tflite model"),
        (["info", f["garbage.onnx"]], "not a valid .onnx model"),
        (["info", f["truncated.keras"]], "not a .keras archive"),
        (["info", f["notes.txt"]], "unknown model file type '.txt'"),
        (["info", str(root / "missing.onnx")], "missing.onnx: no such file"),
        (["info", f["folder.keras"]], "is a folder"),
        (["info", f["garbage.tflite"], "--input-shape", "1,8,8,3"], "a .tflite file's shapes"),
        (["info", f["garbage.onnx"], "--input-shape", "1,a"], "--input-shape '1,a'"),
        (["info", f["garbage.onnx"], "--input-shape", "1,0,8"], "--input-shape '1,0,8'"),
        (["info", f["garbage.onnx"], "-r", "64"], "--resolution applies to registry models"),
        (["export", "nosuchnet"], "unknown model 'nosuchnet'"),
        (["export", "mobilenet_v1", "--int8", "--fp16"], "--int8 and --fp16"),
        (["export", "mobilenet_v1", "--format", "coreml"], "--format 'coreml'"),
        (["export", "mobilenet_v1", "--format", ","], "--format is empty"),
        (["export", "mobilenet_v1", "--format", "onnx", "--sparse"], "--sparse applies to TFLite"),
        (["export", "mobilenet_v1", "--int8", "--sparse"], "--sparse works with fp32 only"),
        (["build", spec("sparse", art + 'precisions = ["int8"]\nsparse = true\n')],
         "sparse works with fp32 only"),
        (["export", "mobilenet_v1", "--int8", "--io", "int4"], "--io 'int4'"),
        (["export", "mobilenet_v1", "--io", "int8"], "--io int8 needs --int8"),
        (["export", "mobilenet_v1", "--layout", "nhwc", "--format", "tflite"], "--layout nhwc"),
        (["export", "mobilenet_v1", "--layout", "chwn"], "--layout 'chwn'"),
        (["export", "mobilenet_v1", "--keep-float", "stem.conv"], "--keep-float needs --int8"),
        (["export", "mobilenet_v1", "--int8", "--io", "uint8", "--keep-float", "stem.conv"],
         "--io float or int8, not uint8"),
        (["export", "mobilenet_v1", "--calib-samples", "0"], "--calib-samples 0"),
        (["export", "mobilenet_v1", "--calib-samples", "20000"], "--calib-samples 20000"),
        (["export", "mobilenet_v1", "--seed", "-1"], "--seed -1"),
        (["export", "mobilenet_v1", "--min-cosine", "5"], "--min-cosine 5"),
        (["export", "mobilenet_v1", "--min-top1", "1.5"], "--min-top1 1.5"),
        (["export", "mobilenet_v1", "--max-abs-error", "0"], "--max-abs-error 0"),
        (["export", "mobilenet_v1", "--max-abs-error-fp16", "-1"], "--max-abs-error-fp16 -1"),
        (["export", "mobilenet_v1", "--min-sqnr", "nan"], "--min-sqnr nan"),
        (["export", "mobilenet_v1", "--calib", str(root / "nope")], f"--calib {root / 'nope'}"),
        (["export", "mobilenet_v1", "--calib", f["notes.txt"]], "not a folder or a .npy/.npz"),
        (["export", "mobilenet_v1", "--calib", f["object.npz"]], "without pickle"),
        (["export", "mobilenet_v1", "--calib", f["empty"]], f"--calib {f['empty']}: no images"),
        (["export", "mobilenet_v1", "--calib", f["flat.npy"]], "shape (4, 32)"),
        (["export", "mobilenet_v1", "--labels", str(root / "nope.txt")], "--labels"),
        (["export", f["model.h5"]], "legacy HDF5"),
        (["export", f["folder.keras"]], "is a folder, not a .keras file"),
        (["export", f["truncated.keras"]], "not a .keras archive"),
        (["export", f["notes.txt"]], "not a model file"),
        (["export", f["truncated.keras"], "-w", "0.5"], "apply to registry models"),
        (["export", "mobilenet_v1", *TINY, "--weights", str(root / "nope.weights.h5")],
         "nope.weights.h5 is not a file"),
        (["quant-report", "nosuchnet"], "unknown model 'nosuchnet'"),
        (["quant-report", "mobilenet_v1", "--top", "0"], "0"),
        (["quant-report", "mobilenet_v1", "--calib-samples", "0"], "--calib-samples 0"),
        (["quant-report", "mobilenet_v1", "--calib", f["object.npz"]], "without pickle"),
        (["profile", "--device", "phone"], "unknown device profile 'phone'"),
        (["profile", "--device", f["bad.toml"]], f["bad.toml"]),
        (["profile", "--delegate", "gpu"], "--delegate 'gpu'"),
        (["profile", "--precision", "fp8"], "--precision 'fp8'"),
        (["profile", "--threads", "0"], "0"),
        (["profile", f["folder.keras"]], "profile measures .tflite/.onnx files"),
        (["profile", f["model.h5"]], "mobilectl export"),
        (["profile", f["garbage.tflite"]], "not a valid .tflite model"),
        (["profile", f["garbage.onnx"]], "not a valid .onnx model"),
        (["profile", str(root / "missing.tflite")], "missing.tflite: no such file"),
        (["profile", f["garbage.tflite"], "--serial", "ABC"], "--serial is not allowed"),
        (["profile", "--device", "pixel", "--adb-server", "farm"], "--adb-server 'farm'"),
        (["devices", "--adb", str(root / "no-adb")], f"adb not found at {root / 'no-adb'}"),
        (["devices", "--adb-server", "host:port"], "--adb-server 'host:port'"),
        (["device", "setup", "--abi", "mips"], "--abi 'mips'"),
        (["device", "setup", "--from", str(root / "nope")], f"--from {root / 'nope'}"),
        (["build", str(root / "nospec.toml")], "nospec.toml: no such spec file"),
        (["build", f["spec.toml"]], "not valid TOML"),
        (["build", spec("int4", art + 'precisions = ["int4"]\n')], "value 'int4'"),
        (["build", spec("seed", art + "seed = -1\n")], "seed -1 is not allowed"),
        (["build", spec("cos", art + "[artifact.thresholds]\nmin_cosine = 5\n")], "5"),
        (["build", spec("typo", art + "knobs = { widht_multiplier = 0.5 }\n")],
         "takes no knob 'widht_multiplier'"),
        (["build", spec("knob", art + "knobs = { width_multiplier = 3.0 }\n")],
         "width_multiplier=3.0"),
        (["build", spec("same", art + 'output = "app"\n[[artifact]]\nname = "b"\n'
                                       'model = "squeezenet1_1"\noutput = "app"\n')],
         "artifacts a/fp32 and b/fp32 would both write app_fp32.tflite"),
        (["build", spec("layout", art + 'layout = "nhwc"\nformats = ["tflite"]\n')],
         "layout nhwc applies to ONNX"),
        (["build", spec("only", art), "--only", "zzz"], "--only zzz"),
        (["build", spec("jobs", art), "--jobs", "0"], "0"),
        (["build", spec("eval", art + "[artifact.eval]\nmin_top1 = 0.9\n")],
         "'artifact[0].eval.data' is needed"),
        (["eval", str(root / "nope.tflite"), "--data", f["object.npz"]], "no such file"),
        (["eval", str(root), "--data", f["object.npz"]], "or a folder holding one"),
        (["prune", "mobilenet_v1", *TINY, "--data", f["object.npz"],
          "--out", str(root / "p.keras")], "x (images) and y (labels) are needed"),
        (["prune", "mobilenet_v1", *TINY, "--data", f["empty"],
          "--out", str(root / "p.keras")], "0 class folder(s)"),
        (["prune", "mobilenet_v1", *TINY, "--data", f["empty"], "--ratio", "2",
          "--out", str(root / "p.keras")], "--ratio 2 is not allowed"),
        (["prune", "mobilenet_v1", *TINY, "--data", f["flat.npy"],
          "--out", str(root / "p.keras")], "not a folder with one sub-folder per class"),
        (["prune", "mobilenet_v1", *TINY, "--data", f["empty"], "--method", "random",
          "--out", str(root / "p.keras")], "--method 'random'"),
        (["prune", "mobilenet_v1", *TINY, "--data", f["empty"], "--method", "magnitude",
          "--out", str(root / "p.keras")], "--method magnitude needs --sparsity"),
        (["prune", "mobilenet_v1", *TINY, "--data", f["empty"], "--method", "magnitude",
          "--sparsity", "1", "--out", str(root / "p.keras")], "--sparsity 1 is not allowed"),
        (["prune", "mobilenet_v1", *TINY, "--data", f["empty"], "--method", "magnitude",
          "--sparsity", "0.5", "--ratio", "0.5", "--out", str(root / "p.keras")],
         "--ratio applies to --method l1 or fpgm"),
        (["prune", "mobilenet_v1", *TINY, "--data", f["empty"], "--sparsity", "0.5",
          "--out", str(root / "p.keras")], "--sparsity applies to --method magnitude"),
    ]


OUT_FLAG = {"export": "--out", "quant-report": None, "profile": "--out", "build": "--out",
            "info": None, "devices": None, "device": None, "eval": None, "prune": None}


def test_bad_input_catalogue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = _files(tmp_path)
    cases = _cases(files, tmp_path)
    assert len(cases) >= 50
    problems = []
    for i, (argv, message) in enumerate(cases):
        out = tmp_path / f"out{i}"
        flag = OUT_FLAG[argv[0]]
        extra = [flag, str(out)] + (["--cache", str(tmp_path / f"cache{i}")]
                                    if argv[0] == "build" else []) if flag else []
        code, _, err = run([*argv, *extra], capsys)
        try:
            line = error_line(code, err)
            assert message in line, f"{message!r} not in {line!r}"
            assert not out.exists(), f"{out} was written"
        except AssertionError as exc:
            problems.append(f"{' '.join(argv)}: {exc}")
    assert not problems, "\n".join(problems)
