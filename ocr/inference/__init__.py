"""After training: load a run directory, run its model over a split, write submissions and overlays."""
