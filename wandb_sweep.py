"""Hyperparameter sweeps of DBNet + HRNet training on W&B, or offline on the embedded controller.

Run `python wandb_sweep.py --help`; the code lives in ocr/sweep/. After training, the subcommands
`build-cache`, `tune-postprocess`, `predict` and `overlays` (code in ocr/tuning/) work on a run directory:
`python wandb_sweep.py tune-postprocess --help`.
"""

import sys

if __name__ == "__main__":
    from ocr.tuning.cli import COMMANDS

    if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:
        from ocr.tuning.cli import main as tuning_main

        sys.exit(tuning_main(sys.argv[1:], prog="python wandb_sweep.py"))
    from ocr.sweep.cli import main

    sys.exit(main())
