"""INITIALIZE: fans, gains, activations, the std/bound formulas, torch and NumPy drawers, the tensor and array
initializers, the registry of names and configs, and whole-model initialization (``model.initialize``).

Importing this package is cheap (no torch): the modules load on their own.
"""

GAIN_SOURCES = ("published", "activation")  # initialize(gain_from=): a scheme's own gain, or the next activation's
RESIDUAL_RULES = ("zero_last", "fixup", "scaled", "deepnorm")  # initialize(residual=...)
