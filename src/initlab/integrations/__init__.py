"""initlab where people train: the Monitor as a callback of the trainers they use.

* :mod:`initlab.integrations.transformers`: ``Monitor``, a Hugging Face ``TrainerCallback``
  (``pip install 'initlab[transformers]'``);
* :mod:`initlab.integrations.lightning`: ``Monitor``, a ``lightning.pytorch.Callback``
  (``pip install 'initlab[lightning]'``);
* Keras' ``fit`` has :class:`initlab.keras.Monitor`.

Each records what :class:`initlab.Monitor` records, at the trainer's logging steps, sends the findings through
the trainer's own logging, and can write the fit to an initlab run store, where ``initlab report`` shows it.
The submodules import their framework; this package imports neither.
"""
