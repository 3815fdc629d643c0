"""Command-line entry points: the sweep launcher and the after-training commands."""
