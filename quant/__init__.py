"""Quantization support: calibration and held-out data (``quant.calibration``),
accuracy checks against the float model (``quant.metrics``: max abs error, cosine,
SQNR, top-1 agreement) and per-layer int8 sensitivity (``quant.sensitivity``)."""
