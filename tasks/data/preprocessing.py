"""What is done to the data before training: patch preprocessing, the held-out
validation split, and the --quick subset; all seeded where random."""

from __future__ import annotations

import numpy as np

LUMINANCE_WEIGHTS = (0.2126, 0.7152, 0.0722)  # Rec. 709


def preprocess_patches(rgb: np.ndarray) -> np.ndarray:
    """RGB patches (N, 3, H, W) -> grey patches (N, H*W) float32 in [0.1, 0.9], computed in
    float64: luminance; each patch's mean subtracted; clipped to [-3s, 3s] with s the
    standard deviation of all those pixels; min-max normalised over the data set (all 0.5
    if every pixel is equal); mapped to [0.1, 0.9] with 0.8 n + 0.1."""
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"patches must have shape (N, 3, H, W), got {rgb.shape}")
    (wr, wg, wb), (red, green, blue) = LUMINANCE_WEIGHTS, rgb.transpose(1, 0, 2, 3)
    luminance = wr * red + wg * green + wb * blue  # (N, H, W)
    centred = luminance - luminance.mean(axis=(1, 2), keepdims=True)
    spread = centred.std()
    clipped = np.clip(centred, -3 * spread, 3 * spread)
    low, high = clipped.min(), clipped.max()
    normalised = (clipped - low) / (high - low) if high > low else np.full_like(clipped, 0.5)
    return (0.8 * normalised + 0.1).reshape(len(rgb), -1).astype(np.float32)


def split_validation(n: int, fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``fraction`` of n samples for validation, by a seeded permutation:
    (train indices, validation indices), each sorted; round(fraction * n) held out, at
    least one when fraction > 0 and n > 1, and never all."""
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    held_out = int(round(fraction * n))
    if fraction > 0 and n > 1:
        held_out = min(max(held_out, 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[held_out:]), np.sort(order[:held_out])


def quick_subset(count: int, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random ``size``-sample subset (all if count <= size):
    what --quick trains on. Random, so a file sorted by class keeps every class."""
    if count <= size:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size, replace=False))
