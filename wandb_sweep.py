"""Hyperparameter sweeps of DBNet + HRNet training on W&B, or offline on the embedded controller.

Run `python wandb_sweep.py --help`; the code lives in ocr/sweep/.
"""

import sys

from ocr.sweep.cli import main

if __name__ == "__main__":
    sys.exit(main())
