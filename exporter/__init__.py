"""Keras -> TFLite and ONNX artifacts: one module per format (``exporter.tflite``,
``exporter.onnx``), the pipeline stages (``exporter.pipeline``: build or load,
calibrate, convert, quantize, verify, write) and the files (``exporter.artifacts``:
names, atomic writes, the manifest)."""
