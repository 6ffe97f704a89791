"""Keras 3 implementations of efficient CNNs, registered with their paper figures."""

from models_keras.registry import build_model, get_model_spec, list_models, register_model

__all__ = ["build_model", "get_model_spec", "list_models", "register_model"]
