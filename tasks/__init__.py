"""Data, training loops, reports and the command line (``python -m tasks``)."""
