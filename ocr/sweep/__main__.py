"""`python -m ocr.sweep` is `python wandb_sweep.py` (the agents that --gpus starts run this way)."""

import sys

from ocr.sweep.cli import main

sys.exit(main())
