"""Post-processing search on a run's cached validation maps: the space, the search, shared-work scoring."""
