"""Post-training quantization (int8 full-integer, fp16, dynamic range) and accuracy
checks. Not implemented yet: tracked by the export-pipeline issue (#4)."""
