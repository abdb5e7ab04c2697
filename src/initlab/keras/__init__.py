"""Keras 3 beside initlab: ``from initlab.keras import initializers`` replaces ``from keras import initializers``,
and :class:`Monitor` watches ``model.fit``. ``il.initialize(keras_model, ...)`` needs nothing from here.

Importing this package imports Keras (``pip install 'initlab[keras]'``); the rest of initlab does not need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from initlab.keras import initializers
    from initlab.keras.monitor import Monitor

__all__ = ["Monitor", "initializers"]


def __getattr__(name: str) -> Any:
    import importlib

    if name == "initializers":
        return importlib.import_module("initlab.keras.initializers")
    if name == "Monitor":
        return importlib.import_module("initlab.keras.monitor").Monitor
    raise AttributeError(f"module 'initlab.keras' has no attribute {name!r}")
