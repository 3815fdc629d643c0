"""Sweeps over `python -m ocr.train`: W&B's server, or the embedded controller built on W&B's `sweeps` engine."""

import warnings

# sweeps 0.2.0 declares its pydantic model config in pydantic-1 spelling; pydantic 2 warns about it on import.
warnings.filterwarnings("ignore", message="Valid config keys have changed in V2", category=UserWarning)
