"""The ground of the stack: contracts every layer shares.

Errors, the quiet TensorFlow import, the version, the typed option values
(:class:`Precision`, :class:`Format`, :class:`IoType`, :class:`Layout`), the manifest
schema as frozen dataclasses, and atomic file writing. Nothing here imports another
package of the project; every package may import this one.
"""
