"""Device profiles and the latency harness.

Profiles are one TOML file per target, shipped as package data and read with
:mod:`importlib.resources` (so they work from a wheel, an editable install or a zip);
``profile`` validates them. ``host`` and ``adb`` are the backends, ``parse`` reads
``benchmark_model``'s output, ``measurement`` holds what a run measured, ``harness``
runs artifacts on a profile's backend and ``report`` writes what it found.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

from mobilectl.core.errors import UserError, nearest


def profile_names() -> list[str]:
    """Names of the bundled profiles (file stems), sorted."""
    files = resources.files(__name__).iterdir()
    return sorted(f.name.removesuffix(".toml") for f in files if f.name.endswith(".toml"))


def load_profile_data(name: str) -> dict[str, Any]:
    """Parse a bundled profile's TOML; a UserError names an unknown profile."""
    names = profile_names()
    if name not in names:
        raise UserError(f"unknown device profile '{name}'{nearest(name, names)}; "
                        f"profiles: {', '.join(names)}")
    text = resources.files(__name__).joinpath(f"{name}.toml").read_text(encoding="utf-8")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"device profile {name}.toml is not valid TOML: {exc}") from None
