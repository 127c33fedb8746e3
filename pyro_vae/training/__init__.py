"""Training: the SVI loop (loop), learning-rate schedules, where training stands (state), checkpoints,
and torchrun's data parallelism (distributed). The loop knows nothing of flags, plots or files."""
