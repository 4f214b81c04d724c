"""The command line (``tinygrad-ee``, installed as ``tinygrad_ee.tasks``): experiments,
their data (`data`), training, checkpoints, reports."""
