"""Keras -> TFLite and -> ONNX export with verification and a manifest. Not
implemented yet: tracked by the export-pipeline issue (#4)."""
