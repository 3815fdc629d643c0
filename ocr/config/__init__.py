"""The rules for a run's config: which keys exist, which values training accepts, which metrics a run logs."""
