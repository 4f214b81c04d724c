"""The command line (``python -m tasks``): experiments, training, checkpoints, reports."""
