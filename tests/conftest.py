"""Shared test set-up."""

from __future__ import annotations

import os

# Keras 3 runs on the torch backend beside initlab; it reads this before its first import.
os.environ.setdefault("KERAS_BACKEND", "torch")
