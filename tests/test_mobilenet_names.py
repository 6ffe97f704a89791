"""Snapshot of the meaningful layer names of the first two networks."""

from __future__ import annotations

from models_keras import build_model


def test_mobilenet_v1_names() -> None:
    names = [layer.name for layer in build_model("mobilenet_v1", resolution=32).layers]
    for expected in ("input", "stem.conv", "stem.bn", "stem.act", "stage1.unit1.dw.conv",
                     "stage1.unit1.pw.conv", "stage4.unit6.pw.act", "stage5.unit2.pw.bn",
                     "classifier.pool", "classifier.fc", "classifier.softmax"):
        assert expected in names
    assert "stage4.unit7.dw.conv" not in names  # the table's n=6 units, not more


def test_mobilenet_v2_names() -> None:
    model = build_model("mobilenet_v2", resolution=32)
    names = [layer.name for layer in model.layers]
    assert "stage1.unit1.expand.conv" not in names  # t=1: no expansion
    for expected in ("stage1.unit1.dw.conv", "stage2.unit1.expand.conv",
                     "stage2.unit2.add", "stage6.unit3.project.bn", "head.conv"):
        assert expected in names
    assert "stage2.unit1.add" not in names  # stride 2: no residual
    assert model.get_layer("stage7.unit1.project.conv").filters == 320
