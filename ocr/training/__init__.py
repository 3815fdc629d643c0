"""Training: the Lightning module, callbacks, batch-size planning, and the train function."""
