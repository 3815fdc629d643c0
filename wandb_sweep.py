"""Hyperparameter sweeps of DBNet + HRNet training on W&B, or offline on the embedded controller.

Run `python wandb_sweep.py --help`. After training, the subcommands `build-cache`, `tune-postprocess`,
`predict` and `overlays` work on a run directory: `python wandb_sweep.py tune-postprocess --help`.
The code lives in ocr/cli/.
"""

import sys

if __name__ == "__main__":
    from ocr.cli.sweep import main

    sys.exit(main())
