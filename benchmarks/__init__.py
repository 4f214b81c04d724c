"""Benchmarks: per-op overhead, model steps, hand-derived NumPy references."""
