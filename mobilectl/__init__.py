"""mobilectl: efficient CNNs from a Keras definition to a measured model on a phone."""

__version__ = "0.1.0"
