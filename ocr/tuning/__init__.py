"""After training: cache a run's validation maps, tune post-processing on them, write submissions.

Modules: `cache` (the float16 validation cache), `runs` (run directory, checkpoint, model), `inference`
(validation pass that fills the cache, prediction over a split), `space` (the post-processing part of a
sweep YAML), `search` (the `sweeps` engine loop), `evaluate` (parallel scoring on the cache with shared
work), `tune` (the tune-postprocess command), `tuned` (parameter sets: run's own, tuned, edited),
`predict` + `submission` (CSV / JSON), `overlays` (PNG overlays), `wandb_link` (the run's W&B run),
`cli` (argparse front end; `python -m ocr.tuning`).
"""
