"""Accuracy checks of a converted model against the Keras float reference."""

from __future__ import annotations

import math

import numpy as np


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Max abs error, mean cosine similarity, SQNR (dB), top-1 agreement and whether
    the output is constant, of ``candidate`` against ``reference`` (both (N, ...) with
    one row per input).

    SQNR is ``10 log10(sum(ref^2) / sum((ref - cand)^2))`` over all outputs; an exact
    match reports ``inf``. A zero row has no direction: its cosine with a non-zero row
    is 0, not 1 (two zero rows agree). ``constant_output`` is 1.0 when the candidate
    gives the same output for every input while the reference does not: an artifact
    that computes nothing, whatever the other metrics say.
    """
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    cand = np.asarray(candidate, dtype=np.float64).reshape(len(candidate), -1)
    noise = float(np.sum((ref - cand) ** 2))
    signal = float(np.sum(ref ** 2))
    ref_norm, cand_norm = np.linalg.norm(ref, axis=1), np.linalg.norm(cand, axis=1)
    both = ref_norm * cand_norm
    cosine = np.where(both > 0, np.sum(ref * cand, axis=1) / np.maximum(both, 1e-300),
                      (ref_norm == cand_norm).astype(np.float64))
    return {
        "max_abs_error": float(np.max(np.abs(ref - cand))),
        "cosine": float(np.mean(cosine)),
        "sqnr_db": math.inf if noise == 0 else 10 * math.log10(max(signal, 1e-30) / noise),
        "top1_agreement": float(np.mean(np.argmax(ref, 1) == np.argmax(cand, 1))),
        "constant_output": float(_constant(cand) and not _constant(ref)),
    }


def _constant(rows: np.ndarray) -> bool:
    """The same output for every input (one row or fewer cannot tell)."""
    return len(rows) > 1 and bool(np.all(rows == rows[:1]))
