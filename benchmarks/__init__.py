"""Benchmarks: ``python -m benchmarks`` runs them all (`benchmarks.suite`).

Modules: `timing` (the timing rule and device synchronisation), `models` (the
benchmarked models; engine and hand-derived runners), `reference` (hand-derived NumPy
steps), `torch_reference` (PyTorch references, optional), `scaling` (LSTM time and
memory against T and batch), `op_overhead` (per-op cost), `report` (markdown, plot),
`compile_modes` (what each compiled-step optimisation is worth), `profile` (where an
eager step spends its time), `lstm_op` (a hand-derived LSTM cell as one op, against the
composed cell).
"""
