"""Learning: a training run — its options, data, loop, optimiser and schedule, early stopping, checkpoints."""
