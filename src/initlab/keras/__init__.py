"""Keras 3 beside initlab: ``from initlab.keras import initializers`` replaces ``from keras import initializers``,
and :class:`Monitor` (a ``keras.callbacks.Callback``) watches ``model.fit``. ``il.initialize(keras_model, ...)``
needs nothing from here.

Importing this package imports Keras (``pip install 'initlab[keras]'``); the rest of initlab does not need it.
"""

from __future__ import annotations

from initlab.keras import initializers
from initlab.keras.monitor import Monitor

__all__ = ["Monitor", "initializers"]
