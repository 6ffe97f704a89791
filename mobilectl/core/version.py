"""The project's version, in one place (the CLI, manifests and metadata read it)."""

__version__ = "0.1.0"
