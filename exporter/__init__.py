"""Keras -> TFLite (``exporter.tflite``) and -> ONNX (``exporter.onnx``).

Float conversion and op listing are here; quantization, verification, metadata and the
manifest come with the export-pipeline issue (#4).
"""
