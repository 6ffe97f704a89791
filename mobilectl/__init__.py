"""mobilectl: efficient CNNs from a Keras definition to a measured model on a phone.

The top of the stack: the CLI and the workflows that combine the layers below it
(``mobilectl.core`` <- ``models_keras``, ``quant`` <- ``exporter``, ``device_profiles``).
"""

from mobilectl.core.version import __version__

__all__ = ["__version__"]
