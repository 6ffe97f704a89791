"""Shared test setup: quiet TensorFlow, and the registry's (spec, figure) pairs."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from mobilectl.tfenv import import_quietly  # noqa: E402

import_quietly()
