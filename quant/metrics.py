"""Accuracy checks of a converted model against the Keras float reference."""

from __future__ import annotations

import math

import numpy as np


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Max abs error, mean cosine similarity, SQNR (dB) and top-1 agreement of
    ``candidate`` against ``reference`` (both (N, ...) with one row per input).

    SQNR is ``10 log10(sum(ref^2) / sum((ref - cand)^2))`` over all outputs; an exact
    match reports ``inf``.
    """
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    cand = np.asarray(candidate, dtype=np.float64).reshape(len(candidate), -1)
    noise = float(np.sum((ref - cand) ** 2))
    signal = float(np.sum(ref ** 2))
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    cosine = np.where(norms > 0, np.sum(ref * cand, axis=1) / np.maximum(norms, 1e-30), 1.0)
    return {
        "max_abs_error": float(np.max(np.abs(ref - cand))),
        "cosine": float(np.mean(cosine)),
        "sqnr_db": math.inf if noise == 0 else 10 * math.log10(max(signal, 1e-30) / noise),
        "top1_agreement": float(np.mean(np.argmax(ref, 1) == np.argmax(cand, 1))),
    }
