"""`python -m ocr.tuning SUBCOMMAND ...` (see ocr/tuning/cli.py)."""

import sys

from ocr.tuning.cli import main

sys.exit(main(sys.argv[1:]))
