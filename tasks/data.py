"""The three experiments' data files: loading, validation and preprocessing.

File layouts (HDF5, read with h5py), as in the original mini project:

- ``data1.h5``: ``data`` (N, 3, H, W) RGB image patches, channels first (16x16 originally).
- ``data2.h5``: ``trainx`` (N, 3) and ``traind`` (N,), ``valx``/``vald``, ``testx``/``testd``,
  integer word indices starting at 1; ``words`` (V,) byte strings.
- ``data3.h5``: ``trX`` (N, T, C) float series, ``trY`` (N, K) one-hot labels, ``tstX``,
  ``tstY``; optionally ``classes`` (K,) byte strings naming the classes.

Every problem with a file raises :class:`DataError`, whose message names the file, the
dataset and what was expected versus what was found, so a user with a broken file learns
what to fix instead of reading an h5py or NumPy traceback.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

# Rec. 709 luminance weights, as the experiment's preprocessing prescribes.
LUMINANCE_WEIGHTS = (0.2126, 0.7152, 0.0722)

NGRAM_SPLITS = ("train", "val", "test")
# Dataset names in data2.h5 for each split: (context, target).
NGRAM_DATASETS = {
    "train": ("trainx", "traind"),
    "val": ("valx", "vald"),
    "test": ("testx", "testd"),
}


# The largest dataset read (the original data1.h5 holds 31 MB): a crafted file can declare
# a huge dataset in a few bytes.
MAX_DATASET_BYTES = 8 * 2**30


class DataError(ValueError):
    """A data file is missing, unreadable, or does not have the expected layout."""


# --- reading HDF5 files safely ------------------------------------------------------------


def _problem(source: str, name: str, text: str) -> DataError:
    return DataError(f"{source}: dataset '{name}' {text}")


def _status(path: Path) -> os.stat_result | None:
    """``path``'s status, None if nothing is there. Any other OS error (a name too long,
    a folder without permission) is a DataError: it is a problem reading the path."""
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        raise DataError(f"{path}: cannot be read: {error.strerror or error}") from None


def is_folder(path: Path) -> bool:
    """Whether ``path`` is a folder (a DataError if it cannot be looked at)."""
    status = _status(path)
    return status is not None and stat.S_ISDIR(status.st_mode)


def _read_datasets(
    path: str | Path, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, np.ndarray]:
    """Read whole datasets from an HDF5 file into memory.

    Every failure (no such file, not HDF5, truncated or corrupt, a dataset missing,
    unreadable, larger than MAX_DATASET_BYTES, or kept in other files through an
    external link, external storage or a virtual dataset) becomes a DataError naming
    the file. Optional datasets that are absent are left out of the result.
    """
    path = Path(path)
    source = str(path)
    status = _status(path)
    if status is None:
        raise DataError(f"{source}: no such file")
    if not stat.S_ISREG(status.st_mode):
        raise DataError(f"{source}: not a regular file")
    try:
        handle = h5py.File(path, "r")
    except Exception as error:  # h5py reports bad signatures and truncation as OSError
        raise DataError(
            f"{source}: not a readable HDF5 file (truncated, corrupt or another format): {error}"
        ) from error
    arrays: dict[str, np.ndarray] = {}
    name = None
    try:
        with handle:
            for name in required + optional:
                link = handle.get(name, getlink=True)
                if link is None:
                    if name in optional:
                        continue
                    found = ", ".join(sorted(handle.keys())) or "nothing"
                    raise _problem(source, name, f"is missing (the file holds: {found})")
                if isinstance(link, h5py.ExternalLink):
                    raise _problem(
                        source, name, f"is a link to another file ({link.filename}): not followed"
                    )
                node = handle.get(name)
                if not isinstance(node, h5py.Dataset):
                    kind = "a dangling link" if node is None else f"a {type(node).__name__}"
                    raise _problem(source, name, f"must be a dataset, got {kind}")
                if node.is_virtual or node.external:
                    raise _problem(source, name, "keeps its data in other files: not read")
                if node.shape is None:
                    raise _problem(source, name, "holds no data (it has a null, empty dataspace)")
                size = node.size * node.dtype.itemsize
                if size > MAX_DATASET_BYTES:
                    raise _problem(
                        source,
                        name,
                        f"holds {size} bytes (shape {_shape_text(node.shape)}), more than "
                        f"the {MAX_DATASET_BYTES} this program reads",
                    )
                arrays[name] = np.asarray(node[()])
    except DataError:
        raise
    except Exception as error:  # whatever a corrupt file makes h5py raise
        # A truncated file can open fine and fail only when the data is read.
        where = f"dataset '{name}' " if name else ""
        raise DataError(
            f"{source}: {where}could not be read (truncated or corrupt file?): {error}"
        ) from error
    return arrays


# --- checks on one array -------------------------------------------------------------------


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def _check_numeric(array: np.ndarray, source: str, name: str, allow_bool: bool = False) -> None:
    kinds = "iuf" + ("b" if allow_bool else "")
    if array.dtype.kind not in kinds:
        raise _problem(source, name, f"must hold numbers, got dtype {array.dtype}")


def _check_rank(array: np.ndarray, source: str, name: str, expected: str) -> None:
    """``expected`` is a shape pattern such as "(N, T, C)"; its rank is the number of names."""
    rank = expected.count(",") + 1
    if array.ndim != rank:
        raise _problem(
            source,
            name,
            f"must have shape {expected} (rank {rank}), got {_shape_text(array.shape)}",
        )


def _check_finite(array: np.ndarray, source: str, name: str) -> None:
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise _problem(
                source,
                name,
                f"must be finite, got {int(bad.sum())} NaN or infinite values "
                f"(first at index {first}: {array[first]})",
            )


def _check_not_empty(array: np.ndarray, source: str, name: str, expected: str) -> None:
    if array.size == 0:
        raise _problem(
            source, name, f"must not be empty, got shape {_shape_text(array.shape)} ({expected})"
        )


def _to_float32(array: np.ndarray, source: str, name: str) -> np.ndarray:
    """Cast to float32, refusing values too large for float32 instead of making them inf."""
    if array.dtype.kind == "f" and array.dtype.itemsize > 4 and array.size:
        largest = float(np.max(np.abs(array)))
        if largest > float(np.finfo(np.float32).max):
            raise _problem(source, name, f"holds {largest:g}, too large for float32")
    return array.astype(np.float32)


def _decode_strings(array: np.ndarray, source: str, name: str) -> list[str]:
    """A 1-d array of byte strings (fixed-width or variable-length) -> Python strings."""
    if array.ndim != 1:
        raise _problem(
            source, name, f"must be a 1-d array of strings, got shape {_shape_text(array.shape)}"
        )
    if array.dtype.kind not in "SUO":
        raise _problem(source, name, f"must hold byte strings, got dtype {array.dtype}")
    strings = []
    for index, item in enumerate(array.tolist()):
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError as error:
                raise _problem(source, name, f"entry {index} is not UTF-8: {item!r}") from error
        if not isinstance(item, str):
            raise _problem(
                source, name, f"must hold strings, entry {index} is a {type(item).__name__}"
            )
        strings.append(item)
    return strings


# --- experiment 1: image patches -----------------------------------------------------------


def patches_from_array(
    array: np.ndarray, source: str = "<array>", name: str = "data"
) -> np.ndarray:
    """Validate RGB patches (N, 3, H, W) and return them as float32."""
    array = np.asarray(array)
    _check_numeric(array, source, name)
    _check_rank(array, source, name, "(N, 3, H, W)")
    if array.shape[1] != 3:
        raise _problem(
            source,
            name,
            f"must have shape (N, 3, H, W) with 3 colour channels first, "
            f"got {_shape_text(array.shape)}",
        )
    _check_not_empty(array, source, name, "N, H and W must be positive")
    _check_finite(array, source, name)
    return _to_float32(array, source, name)


def load_patches(path: str | Path) -> np.ndarray:
    """Load ``data1.h5``: RGB patches (N, 3, H, W) float32 from dataset ``data``."""
    arrays = _read_datasets(path, ("data",))
    return patches_from_array(arrays["data"], str(path), "data")


def preprocess_patches(rgb: np.ndarray) -> np.ndarray:
    """RGB patches (N, 3, H, W) -> preprocessed grey patches (N, H*W) float32 in [0.1, 0.9].

    In the experiment's order: luminance Y = 0.2126 R + 0.7152 G + 0.0722 B; subtract each
    patch's own mean; s = standard deviation over all mean-removed pixels of the data set;
    clip to [-3s, 3s]; min-max normalise over the whole data set to [0, 1]; map to
    [0.1, 0.9] with 0.8 n + 0.1; flatten each patch. Computed in float64.

    If every pixel ends up equal (e.g. every patch is flat), min-max normalisation is
    undefined; every value then becomes 0.5, the middle of the range.
    """
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"patches must have shape (N, 3, H, W), got {rgb.shape}")
    red, green, blue = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    wr, wg, wb = LUMINANCE_WEIGHTS
    luminance = wr * red + wg * green + wb * blue  # (N, H, W)
    centred = luminance - luminance.mean(axis=(1, 2), keepdims=True)
    spread = centred.std()
    clipped = np.clip(centred, -3 * spread, 3 * spread)
    low, high = clipped.min(), clipped.max()
    if high > low:
        normalised = (clipped - low) / (high - low)
    else:
        normalised = np.full_like(clipped, 0.5)
    mapped = 0.8 * normalised + 0.1
    return mapped.reshape(len(rgb), -1).astype(np.float32)


# --- experiment 2: 4-grams -------------------------------------------------------------------


@dataclass
class NgramData:
    """4-gram splits with 0-based word indices.

    ``words``: the vocabulary, V strings. For each split ("train", "val", "test"):
    ``<split>_context`` (N, 3) int64, the three preceding words, and ``<split>_target``
    (N,) int64, the fourth word; every index is in 0..V-1.
    """

    words: list[str]
    train_context: np.ndarray
    train_target: np.ndarray
    val_context: np.ndarray
    val_target: np.ndarray
    test_context: np.ndarray
    test_target: np.ndarray

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(context (N, 3), target (N,)) of the split "train", "val" or "test"."""
        if name not in NGRAM_SPLITS:
            raise ValueError(f"split must be one of {NGRAM_SPLITS}, got {name!r}")
        return getattr(self, f"{name}_context"), getattr(self, f"{name}_target")


def _word_indices(array: np.ndarray, source: str, name: str, vocab_size: int) -> np.ndarray:
    """1-based word indices (ints, or floats holding whole numbers) -> 0-based int64."""
    if array.dtype.kind not in "iuf":
        raise _problem(source, name, f"must hold integer word indices, got dtype {array.dtype}")
    _check_finite(array, source, name)
    if array.dtype.kind == "f":
        fractional = array != np.round(array)
        if fractional.any():
            first = tuple(int(i) for i in np.argwhere(fractional)[0])
            raise _problem(
                source,
                name,
                f"must hold whole-number word indices, got {array[first]} at index {first}",
            )
    outside = (array < 1) | (array > vocab_size)
    if outside.any():
        first = tuple(int(i) for i in np.argwhere(outside)[0])
        value = array[first]
        value_text = str(int(value)) if array.dtype.kind in "iu" else f"{value:g}"
        raise _problem(
            source,
            name,
            f"holds word index {value_text} at index {first}, allowed range 1..{vocab_size} "
            f"(indices start at 1; 'words' has {vocab_size} entries)",
        )
    return array.astype(np.int64) - 1


def ngram_data_from_arrays(arrays: Mapping[str, np.ndarray], source: str) -> NgramData:
    """Validate the data2.h5 arrays (1-based indices) and convert them to NgramData."""
    words = _decode_strings(np.asarray(arrays["words"]), source, "words")
    if not words:
        raise _problem(source, "words", "must hold at least one word, got an empty array")
    fields: dict[str, np.ndarray] = {}
    for split in NGRAM_SPLITS:
        context_name, target_name = NGRAM_DATASETS[split]
        context = np.asarray(arrays[context_name])
        target = np.asarray(arrays[target_name])
        if context.ndim != 2 or context.shape[1] != 3:
            raise _problem(
                source, context_name, f"must have shape (N, 3), got {_shape_text(context.shape)}"
            )
        if target.ndim != 1:
            raise _problem(
                source, target_name, f"must have shape (N,), got {_shape_text(target.shape)}"
            )
        if len(context) != len(target):
            raise _problem(
                source,
                target_name,
                f"must have one target per row of '{context_name}': expected "
                f"{len(context)} rows, got {len(target)}",
            )
        _check_not_empty(context, source, context_name, "at least one 4-gram per split")
        fields[f"{split}_context"] = _word_indices(context, source, context_name, len(words))
        fields[f"{split}_target"] = _word_indices(target, source, target_name, len(words))
    return NgramData(words=words, **fields)


def load_ngrams(path: str | Path) -> NgramData:
    """Load ``data2.h5``: 4-gram splits and vocabulary, indices converted to 0-based."""
    names = tuple(name for split in NGRAM_SPLITS for name in NGRAM_DATASETS[split])
    arrays = _read_datasets(path, names + ("words",))
    return ngram_data_from_arrays(arrays, str(path))


# --- experiment 3: activity series ---------------------------------------------------------


@dataclass
class ActivityData:
    """Labelled multichannel time series.

    ``train_x`` (N, T, C) float32, ``train_y`` (N,) int64 class indices in 0..K-1;
    ``test_x`` (M, T, C), ``test_y`` (M,); ``class_names``: K strings.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _one_hot_to_indices(array: np.ndarray, source: str, name: str) -> np.ndarray:
    """(N, K) one-hot rows -> (N,) int64 class indices; each row exactly one 1, zeros else."""
    is_one, is_zero = array == 1, array == 0
    good = (is_one.sum(axis=1) == 1) & (is_one | is_zero).all(axis=1)
    if not good.all():
        row = int(np.argmin(good))
        raise _problem(
            source,
            name,
            f"must be one-hot (exactly one 1 and zeros elsewhere in each row), "
            f"row {row} is {array[row].tolist()}",
        )
    return np.argmax(array, axis=1).astype(np.int64)


def activity_data_from_arrays(arrays: Mapping[str, np.ndarray], source: str) -> ActivityData:
    """Validate the data3.h5 arrays (trX, trY, tstX, tstY, optional classes)."""
    series: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    for x_name, y_name in (("trX", "trY"), ("tstX", "tstY")):
        x, y = np.asarray(arrays[x_name]), np.asarray(arrays[y_name])
        _check_numeric(x, source, x_name)
        _check_rank(x, source, x_name, "(N, T, C)")
        _check_not_empty(x, source, x_name, "N, T and C must be positive")
        _check_finite(x, source, x_name)
        _check_numeric(y, source, y_name, allow_bool=True)
        _check_rank(y, source, y_name, "(N, K)")
        _check_not_empty(y, source, y_name, "N and K must be positive")
        _check_finite(y, source, y_name)
        if len(x) != len(y):
            raise _problem(
                source,
                y_name,
                f"must have one label row per series of '{x_name}': expected {len(x)} rows, "
                f"got {len(y)}",
            )
        series[x_name] = _to_float32(x, source, x_name)
        labels[y_name] = _one_hot_to_indices(y, source, y_name)
    train_x, test_x = series["trX"], series["tstX"]
    if train_x.shape[1:] != test_x.shape[1:]:
        raise _problem(
            source,
            "tstX",
            f"must have the same steps and channels (T, C) as 'trX' {train_x.shape[1:]}, "
            f"got {test_x.shape[1:]}",
        )
    classes = np.asarray(arrays["trY"]).shape[1]
    test_classes = np.asarray(arrays["tstY"]).shape[1]
    if test_classes != classes:
        raise _problem(
            source, "tstY", f"must have K = {classes} columns like 'trY', got {test_classes}"
        )
    if "classes" in arrays:
        class_names = _decode_strings(np.asarray(arrays["classes"]), source, "classes")
        if len(class_names) != classes:
            raise _problem(
                source,
                "classes",
                f"must name each of the K = {classes} classes of 'trY', "
                f"got {len(class_names)} names",
            )
    else:
        class_names = [f"class {k}" for k in range(classes)]
    return ActivityData(
        train_x=train_x,
        train_y=labels["trY"],
        test_x=test_x,
        test_y=labels["tstY"],
        class_names=class_names,
    )


def load_activity(path: str | Path) -> ActivityData:
    """Load ``data3.h5``: series (N, T, C), one-hot labels -> class indices, class names."""
    arrays = _read_datasets(path, ("trX", "trY", "tstX", "tstY"), optional=("classes",))
    return activity_data_from_arrays(arrays, str(path))


def require_rows(source: Path | None, name: str, count: int, minimum: int, why: str) -> None:
    """A DataError naming the file and dataset when it has fewer than ``minimum`` rows
    (``why``: what needs them). Loaders refuse empty datasets; experiments need more."""
    if count < minimum:
        where = source if source is not None else "the embedded data"
        rows = "row" if count == 1 else "rows"
        raise _problem(str(where), name, f"has {count} {rows}, fewer than the {minimum} that {why}")


def split_validation(n: int, fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``fraction`` of n samples for validation, chosen by a seeded permutation.

    Returns (train_idx, val_idx), int64 index arrays, each sorted, disjoint, covering
    0..n-1. The validation set has round(fraction * n) samples, at least one when
    fraction > 0 and n > 1, and never all n.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    held_out = int(round(fraction * n))
    if fraction > 0 and n > 1:
        held_out = min(max(held_out, 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[held_out:]), np.sort(order[:held_out])
