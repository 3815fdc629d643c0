"""Sweeps over `python -m ocr.train`: W&B's server, or the embedded controller built on W&B's `sweeps` engine."""
