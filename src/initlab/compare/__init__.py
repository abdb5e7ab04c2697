"""COMPARE: data sets, model builders, the training loop and its config, the SQLite run store, sweeps (local
pool or Ray), the HTML report and the demo's claims."""
