"""Device profiles: one TOML file per target, shipped as package data.

Files are read with :mod:`importlib.resources`, so they work from a wheel, an
editable install or a zip. Validation of the fields and the latency harness that uses
them come with the profiling work (see the README's roadmap).
"""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

from mobilectl.errors import UserError, nearest


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
