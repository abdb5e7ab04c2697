"""The HTML report and its plots, built only from what the run store holds."""
