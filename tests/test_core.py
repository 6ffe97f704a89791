"""The ground layer's contracts: typed option values, the manifest schema's JSON round
trip, and ONNX tensor types read as numpy dtype names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mobilectl.core.errors import UserError
from mobilectl.core.manifest import (
    CalibrationInfo, ManifestEntry, Normalization, TensorInfo, TensorIO, VerificationResult,
    read_manifest, update_manifest,
)
from mobilectl.core.types import Format, IoType, Layout, Precision, parse


def _entry(path: str = "m_int8.tflite", **changes) -> ManifestEntry:
    fields = dict(
        path=path, format=Format.TFLITE, precision=Precision.INT8, sha256="ab" * 32,
        bytes=123, model="m", variant="w0.5", origin="registry", knobs={"resolution": 32},
        weights="random-init", layout=Layout.NHWC, io_type=IoType.INT8,
        io=TensorIO((TensorInfo("input", (1, 32, 32, 3), "int8", 0.5, -3),),
                    (TensorInfo("out", (1, 10), "int8", 0.0039, -128),)),
        macs=1000, params=10, normalization=Normalization(), keep_float=("stem.conv",),
        calibration=CalibrationInfo("digits.npy", "array", 16, 4),
        verification=VerificationResult(4, {"cosine": 0.5, "sqnr_db": float("inf"),
                                             "top1_agreement": 1.0},
                                        {"cosine": ">= 0.98", "sqnr_db": ">= 12",
                                         "top1_agreement": ">= 0.8"}, False, True),
        tools={"tensorflow": "2.21.0"})
    fields.update(changes)
    return ManifestEntry(**fields)


def test_precision_knows_which_are_quantized() -> None:
    assert [p for p in Precision if p.is_quantized] == [Precision.DYNAMIC, Precision.INT8]
    assert Precision.INT8 == "int8" and json.dumps([Precision.FP16]) == '["fp16"]'


def test_parse_names_the_flag_and_the_allowed_values() -> None:
    assert parse(Format, "onnx", flag="--format") is Format.ONNX
    with pytest.raises(UserError, match=r"--io 'int4' is not allowed: one of float, int8, uint8"):
        parse(IoType, "int4", flag="--io")


def test_manifest_entry_round_trips_through_json(tmp_path: Path) -> None:
    entry = _entry()
    data = json.loads(json.dumps(entry.to_dict(), allow_nan=False))
    assert data["verification"]["metrics"]["sqnr_db"] is None  # inf is written as null
    assert data["inputs"][0] == {"name": "input", "shape": [1, 32, 32, 3], "dtype": "int8",
                                 "scale": 0.5, "zero_point": -3}
    assert "cache_key" not in data  # build fields only when a build set them
    back = ManifestEntry.from_dict(data)
    assert back.to_dict() == data and back.io == entry.io and back.precision is Precision.INT8
    built = entry.with_build(cache_key="k", artifact="a", build="reused")
    assert ManifestEntry.from_dict(built.to_dict()).build == "reused"


def test_verification_names_the_failing_metric() -> None:
    check = _entry().verification
    assert check.failed == ("cosine",) and check.headline == "cosine"
    check = VerificationResult(4, {"cosine": 0.99, "sqnr_db": 3.0, "top1_agreement": 1.0},
                               {"cosine": ">= 0.98", "sqnr_db": ">= 12",
                                "top1_agreement": ">= 0.8"}, False, True)
    assert check.headline == "sqnr_db"


def test_manifest_update_merges_and_keeps_existing_files(tmp_path: Path) -> None:
    for name in ("b_int8.tflite", "a_int8.tflite"):
        (tmp_path / name).write_bytes(b"x")
    update_manifest(tmp_path, [_entry("b_int8.tflite")])
    update_manifest(tmp_path, [_entry("a_int8.tflite"), _entry("gone_int8.tflite")])
    (tmp_path / "b_int8.tflite").unlink()
    update_manifest(tmp_path, [])
    assert [e.path for e in read_manifest(tmp_path).artifacts] == ["a_int8.tflite"]
    (tmp_path / "manifest.json").write_text('{"artifacts": [{"path": "x"}]}')
    with pytest.raises(UserError, match="a malformed artifact entry"):
        read_manifest(tmp_path)


def test_onnx_tensor_types_are_numpy_dtype_names() -> None:
    from onnx import TensorProto, helper

    from exporter import onnx as onnx_export

    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    io = onnx_export.io_details(model.SerializeToString())
    assert io.inputs[0].dtype == "float16" and io.outputs[0].dtype == "float32"


def _add_entries(folder: str, prefix: str, count: int) -> None:
    for i in range(count):
        name = f"{prefix}{i:03d}_int8.tflite"
        (Path(folder) / name).write_bytes(b"x")
        update_manifest(Path(folder), [_entry(name)])


def test_concurrent_manifest_updates_lose_no_entry(tmp_path: Path) -> None:
    """Two processes merging into one manifest 100 times each: 200 entries, none lost
    (the read-modify-write holds the folder's lock; no lock file is left)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_add_entries, args=(str(tmp_path), p, 100))
               for p in ("a", "b")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert len(read_manifest(tmp_path).artifacts) == 200
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
