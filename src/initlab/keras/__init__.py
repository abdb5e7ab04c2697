"""Keras 3 beside initlab: ``from initlab.keras import initializers`` replaces ``from keras import initializers``.
``il.initialize(keras_model, ...)`` needs nothing from here.

Importing this package imports Keras (``pip install 'initlab[keras]'``); the rest of initlab does not need it.
"""
