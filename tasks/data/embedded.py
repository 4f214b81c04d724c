"""The embedded data, used when no --data is given (described in docs/experiments.md):
random 16x16 patches of the photograph matplotlib ships; 4-grams over Python's own
prose, built by `ngrams` and shipped as ``tasks/data/ngrams.npz``; a seeded synthetic
accelerometer generator. `files` gives all three in the layouts of data1/2/3.h5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .layouts import (
    NGRAM_DATASETS,
    ActivityData,
    NgramData,
    activity_data_from_arrays,
    ngram_data_from_arrays,
)

PATCH_SIZE = 16
SHIPPED_NGRAMS = Path(__file__).with_name("ngrams.npz")


def _sample_photograph() -> np.ndarray:
    """The photograph matplotlib ships, (H, W, 3) float32 in [0, 1]."""
    import matplotlib.cbook
    import matplotlib.image

    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    image = matplotlib.image.imread(path)  # (600, 512, 3) uint8 for this JPEG
    image = np.asarray(image)[..., :3]
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return image.astype(np.float32)


def default_patches(count: int = 10240, seed: int = 0) -> np.ndarray:
    """``count`` random 16x16 RGB patches of Grace Hopper's photograph (matplotlib's sample).

    Top-left corners are drawn uniformly (seeded) over every position where a whole patch
    fits; patches may overlap. Returns (count, 3, 16, 16) float32 in [0, 1], channels
    first like ``data1.h5``. Identical for the same seed (given the same JPEG decoder).
    """
    image = _sample_photograph()
    height, width, _ = image.shape
    rng = np.random.default_rng(seed)
    tops = rng.integers(0, height - PATCH_SIZE + 1, size=count)
    lefts = rng.integers(0, width - PATCH_SIZE + 1, size=count)
    offsets = np.arange(PATCH_SIZE)
    rows = tops[:, None, None] + offsets[None, :, None]  # (count, 16, 1)
    cols = lefts[:, None, None] + offsets[None, None, :]  # (count, 1, 16)
    patches = image[rows, cols]  # (count, 16, 16, 3)
    return np.ascontiguousarray(patches.transpose(0, 3, 1, 2), dtype=np.float32)


def default_ngrams() -> NgramData:
    """The shipped 4-gram data set (0-based indices), checked like a data2.h5 file."""
    with np.load(SHIPPED_NGRAMS, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    return ngram_data_from_arrays(arrays, f"{SHIPPED_NGRAMS} (shipped default 4-grams)")


def ngram_file_arrays(data: NgramData, index_dtype: str = "int16") -> dict[str, np.ndarray]:
    """NgramData -> the data2.h5 arrays: 1-based indices, words as UTF-8 byte strings."""
    arrays = {"words": np.array([word.encode("utf-8") for word in data.words], dtype=np.bytes_)}
    for split, (context_name, target_name) in NGRAM_DATASETS.items():
        context, target = data.split(split)
        arrays[context_name] = (context + 1).astype(index_dtype)
        arrays[target_name] = (target + 1).astype(index_dtype)
    return arrays


ACTIVITY_CLASSES = ("downstairs", "jogging", "sitting", "standing", "upstairs", "walking")
SAMPLE_RATE_HZ = 20.0

# Gaits, in the body frame (x lateral, y up, z forward), accelerations in g:
# step frequency (Hz), vertical / lateral / forward amplitude, 2nd and 3rd harmonic
# (relative to the fundamental), and skew, the weight of a sawtooth that makes the
# vertical wave asymmetric in time: > 0 rises sharply then decays (landing impacts,
# downstairs), < 0 rises slowly then drops (pushing the body up, upstairs).
GAITS = {
    "downstairs": dict(
        freq=1.85, vertical=0.42, lateral=0.20, forward=0.24, h2=0.30, h3=0.10, skew=0.35
    ),
    "jogging": dict(
        freq=2.60, vertical=1.00, lateral=0.40, forward=0.45, h2=0.45, h3=0.25, skew=0.0
    ),
    "upstairs": dict(
        freq=1.65, vertical=0.38, lateral=0.20, forward=0.24, h2=0.30, h3=0.10, skew=-0.35
    ),
    "walking": dict(
        freq=1.80, vertical=0.38, lateral=0.18, forward=0.22, h2=0.30, h3=0.10, skew=0.0
    ),
}
# Postures: the mean tilt of the phone's y axis from vertical, towards +z (degrees).
POSTURE_TILT_DEG = {"sitting": 70.0, "standing": 8.0}

FREQ_JITTER = 0.08  # relative sd of a series' step frequency
AMPLITUDE_JITTER = 0.20  # sd of log amplitude, per axis
ORIENTATION_JITTER_DEG = 12.0  # sd of a random rotation of the phone, per series
SENSOR_NOISE = 0.03  # sd of white noise on every axis (g)
GAIT_NOISE = 0.06  # extra white noise while moving, relative to the vertical amplitude
SKEW_JITTER = 0.15  # sd of a series' skew around its class's value
PHASE_NOISE = 0.05  # sd of the phase's random walk per sample (radians)


def _random_rotations(count: int, sd_deg: float, rng: np.random.Generator) -> np.ndarray:
    """(count, 3, 3) rotations about uniformly random axes by N(0, sd_deg) degree angles."""
    axes = rng.normal(size=(count, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.deg2rad(rng.normal(0.0, sd_deg, size=count))
    # Rodrigues: R = I + sin(a) K + (1 - cos(a)) K^2, K the cross-product matrix of the axis.
    cross = np.zeros((count, 3, 3))
    cross[:, 0, 1], cross[:, 0, 2] = -axes[:, 2], axes[:, 1]
    cross[:, 1, 0], cross[:, 1, 2] = axes[:, 2], -axes[:, 0]
    cross[:, 2, 0], cross[:, 2, 1] = -axes[:, 1], axes[:, 0]
    sin, cos = np.sin(angles)[:, None, None], np.cos(angles)[:, None, None]
    return np.eye(3) + sin * cross + (1 - cos) * (cross @ cross)


def _gait_series(name: str, count: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    """(count, steps, 3) body-frame dynamic acceleration of one gait, gravity excluded."""
    params = GAITS[name]
    time = np.arange(steps) / SAMPLE_RATE_HZ  # seconds
    freq = params["freq"] * (1 + FREQ_JITTER * rng.standard_normal((count, 1)))
    # The cadence drifts a little within a series (a slow sinusoid of up to 4 %).
    drift_depth = rng.uniform(0, 0.04, (count, 1))
    drift_period = rng.uniform(3, 8, (count, 1))
    drift_phase = rng.uniform(0, 2 * np.pi, (count, 1))
    drift = drift_depth * np.sin(2 * np.pi * time / drift_period + drift_phase)
    # Steps are not perfectly regular: the phase also takes a small random walk.
    phase_steps = 2 * np.pi * freq * (1 + drift) / SAMPLE_RATE_HZ
    phase_steps = phase_steps + PHASE_NOISE * rng.standard_normal((count, steps))
    phase = rng.uniform(0, 2 * np.pi, (count, 1)) + np.cumsum(phase_steps, axis=1)
    skew = params["skew"] + SKEW_JITTER * rng.standard_normal((count, 1))
    symmetric = np.cos(phase) + params["h2"] * np.cos(2 * phase) + params["h3"] * np.cos(3 * phase)
    # Partial sum of a sawtooth: sum_k sin(k phase) / k rises sharply, then falls linearly.
    sawtooth = np.sin(phase) + np.sin(2 * phase) / 2 + np.sin(3 * phase) / 3
    scale = np.exp(AMPLITUDE_JITTER * rng.standard_normal((count, 3)))
    vertical = params["vertical"] * scale[:, 1:2] * (symmetric + skew * sawtooth)
    # Hips sway once per stride, i.e. at half the step frequency.
    sway_phase = rng.uniform(0, 2 * np.pi, (count, 1))
    lateral = params["lateral"] * scale[:, 0:1] * np.cos(phase / 2 + sway_phase)
    forward = params["forward"] * scale[:, 2:3] * np.sin(phase + 0.3 * skew)
    motion = np.stack([lateral, vertical, forward], axis=2)
    noise = GAIT_NOISE * params["vertical"] * rng.standard_normal(motion.shape)
    return motion + noise


def _posture_gravity(name: str, count: int) -> np.ndarray:
    """(count, 3) body-frame gravity direction of a posture before orientation jitter."""
    tilt = np.deg2rad(POSTURE_TILT_DEG[name])
    return np.tile([0.0, np.cos(tilt), np.sin(tilt)], (count, 1))


def default_activity(
    train: int = 3000, test: int = 600, steps: int = 150, seed: int = 0
) -> ActivityData:
    """Seeded synthetic 3-axis accelerometer series (in g, 20 Hz) of six activities,
    equally many of each (described in docs/experiments.md): train_x (train, steps, 3)
    float32, train_y (train,) int64, test_x, test_y, class_names. Same seed, same arrays.
    """
    rng = np.random.default_rng(seed)
    names = list(ACTIVITY_CLASSES)
    splits = {}
    for split, count in (("train", train), ("test", test)):
        labels = rng.permutation(np.arange(count) % len(names))
        series = np.empty((count, steps, 3))
        time = np.arange(steps) / SAMPLE_RATE_HZ
        for k, name in enumerate(names):
            members = np.flatnonzero(labels == k)
            n = len(members)
            if n == 0:
                continue
            if name in GAITS:
                body = _gait_series(name, n, steps, rng)
                body[:, :, 1] += 1.0  # gravity along "up"
            else:
                gravity = _posture_gravity(name, n)
                sway = rng.uniform(0, 0.02, (n, 1, 3)) * np.sin(
                    2 * np.pi * rng.uniform(0.1, 0.5, (n, 1, 3)) * time[None, :, None]
                    + rng.uniform(0, 2 * np.pi, (n, 1, 3))
                )
                body = gravity[:, None, :] + sway
            rotations = _random_rotations(n, ORIENTATION_JITTER_DEG, rng)
            phone = np.einsum("nij,ntj->nti", rotations, body)
            series[members] = phone + SENSOR_NOISE * rng.standard_normal(phone.shape)
        splits[split] = (series, labels)
    (train_x, train_y), (test_x, test_y) = splits["train"], splits["test"]
    one_hot = np.eye(len(names), dtype=np.float32)
    arrays = {
        "trX": train_x.astype(np.float32),
        "trY": one_hot[train_y],
        "tstX": test_x.astype(np.float32),
        "tstY": one_hot[test_y],
        "classes": np.array([name.encode() for name in names], dtype=np.bytes_),
    }
    return activity_data_from_arrays(arrays, "default activity data")


def files(
    patch_count: int = 10240,
    activity_train: int = 3000,
    activity_test: int = 600,
    activity_steps: int = 150,
    seed: int = 0,
) -> dict[str, dict[str, np.ndarray]]:
    """The embedded data as the datasets of data1.h5, data2.h5 and data3.h5, in the
    layouts `data.layouts` reads (int32 word indices, float32 one-hot labels, class
    names)."""
    activity = default_activity(activity_train, activity_test, activity_steps, seed)
    one_hot = np.eye(activity.num_classes, dtype=np.float32)
    return {
        "data1.h5": {"data": default_patches(patch_count, seed)},
        "data2.h5": ngram_file_arrays(default_ngrams(), "int32"),
        "data3.h5": {
            "trX": activity.train_x,
            "trY": one_hot[activity.train_y],
            "tstX": activity.test_x,
            "tstY": one_hot[activity.test_y],
            "classes": np.array([name.encode() for name in activity.class_names], dtype=np.bytes_),
        },
    }
