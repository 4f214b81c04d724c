"""The experiments' data files (layouts in docs/experiments.md): loading, checking,
preprocessing, subsets. Every problem with a file is a `DataError` naming the file,
the dataset, what was expected and what was found.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .files import unholdable

LUMINANCE_WEIGHTS = (0.2126, 0.7152, 0.0722)  # Rec. 709
NGRAM_SPLITS = ("train", "val", "test")
NGRAM_DATASETS = {
    "train": ("trainx", "traind"),
    "val": ("valx", "vald"),
    "test": ("testx", "testd"),
}
MAX_DATASET_BYTES = 8 * 2**30  # a few bytes of HDF5 can declare a dataset of any size


class DataError(ValueError):
    """A data file is missing, unreadable, or does not have the expected layout."""


def _problem(source, name: str, text: str) -> DataError:
    return DataError(f"{source}: dataset '{name}' {text}")


def is_folder(path: Path) -> bool:
    """Whether ``path`` is a folder; a path that cannot be looked up is a DataError."""
    try:
        return stat.S_ISDIR(path.stat().st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as error:  # a name too long, a folder without permission
        raise DataError(f"{path}: cannot be read: {error.strerror or error}") from None


def _dataset(handle: h5py.File, source: str, name: str) -> np.ndarray:
    """One whole dataset, refusing what lives in other files and what is too large."""
    link = handle.get(name, getlink=True)
    if link is None:
        found = ", ".join(sorted(handle.keys())) or "nothing"
        raise _problem(source, name, f"is missing (the file holds: {found})")
    if isinstance(link, h5py.ExternalLink):
        raise _problem(source, name, f"is a link to another file ({link.filename}): not followed")
    node = handle.get(name)
    if not isinstance(node, h5py.Dataset):
        raise _problem(source, name, f"must be a dataset, got {type(node).__name__}")
    if node.is_virtual or node.external:
        raise _problem(source, name, "keeps its data in other files: not read")
    if node.shape is None:
        raise _problem(source, name, "holds no data (it has a null, empty dataspace)")
    if node.size * node.dtype.itemsize > MAX_DATASET_BYTES:
        size = node.size * node.dtype.itemsize
        raise _problem(source, name, f"holds {size} bytes, more than the {MAX_DATASET_BYTES} read")
    return np.asarray(node[()])


def _read(path: str | Path, names: tuple[str, ...], optional=()) -> dict[str, np.ndarray]:
    """The datasets ``names`` (and ``optional`` ones, if present) of an HDF5 file."""
    path, name = Path(path), None
    if is_folder(path) or (path.exists() and not path.is_file()):
        raise DataError(f"{path}: not a regular file")
    if not path.exists():
        raise DataError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as handle:
            arrays = {}
            for name in (*names, *(name for name in optional if name in handle)):
                arrays[name] = _dataset(handle, str(path), name)
            return arrays
    except DataError:
        raise
    except Exception as error:  # what h5py raises for another format, or a corrupt file
        where = f"dataset '{name}' " if name else ""
        raise DataError(
            f"{path}: {where}not a readable HDF5 file (truncated, corrupt or another format): "
            f"{error}"
        ) from error


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _checked(array, source, name: str, shape: str, kinds="iuf", what="numbers", note=""):
    """``array`` as NumPy, checked: its dtype's kind in ``kinds``; ``shape`` a pattern
    such as "(N, 3)" (a letter: any size, a number: that size); not empty; finite."""
    array = np.asarray(array)
    if array.dtype.kind not in kinds:
        raise _problem(source, name, f"must hold {what}, got dtype {array.dtype}")
    sizes = shape.strip("(,)").split(", ")
    if array.ndim != len(sizes) or any(
        s.isdigit() and int(s) != n for s, n in zip(sizes, array.shape)
    ):
        raise _problem(source, name, f"must have shape {shape}{note}, got {_shape(array.shape)}")
    if array.size == 0:
        raise _problem(source, name, f"must not be empty, got shape {_shape(array.shape)}")
    if (bad := unholdable(array, np.float32 if array.dtype.kind == "f" else None)) is not None:
        index, value = bad
        if np.isfinite(value):
            raise _problem(source, name, f"holds {value:g} at {index}, too large for float32")
        raise _problem(source, name, f"must be finite, got {value} at index {index}")
    return array


def _strings(array, source, name: str) -> list[str]:
    """A 1-d array of byte strings (fixed or variable length) as Python strings."""
    array = _checked(array, source, name, "(V,)", "SUO", "byte strings", ", a 1-d array")
    items = array.tolist()
    for index, item in enumerate(items):
        try:
            items[index] = item.decode("utf-8") if isinstance(item, bytes) else item
        except UnicodeDecodeError:
            raise _problem(source, name, f"entry {index} is not UTF-8: {item!r}") from None
        if not isinstance(items[index], str):
            raise _problem(source, name, f"entry {index} is not a string: {item!r}")
    return items


def require_rows(source: Path | None, name: str, count: int, minimum: int, why: str) -> None:
    """A DataError naming the file and dataset when it has fewer than ``minimum`` rows
    (``why``: what needs them). Loaders refuse empty datasets; experiments need more."""
    if count < minimum:
        rows = "row" if count == 1 else "rows"
        where = source if source is not None else "the embedded data"
        raise _problem(where, name, f"has {count} {rows}, fewer than the {minimum} that {why}")


def _same_rows(source, name: str, count: int, of: str, rows: int) -> None:
    if rows != count:
        expected = f"expected {count} rows, got {rows}"
        raise _problem(source, name, f"must have one row per row of '{of}': {expected}")


def quick_subset(count: int, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random ``size``-sample subset (all if count <= size):
    what --quick trains on. Random, so a file sorted by class keeps every class."""
    if count <= size:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size, replace=False))


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


# --- experiment 1: image patches ------------------------------------------------------------


def load_patches(path: str | Path) -> np.ndarray:
    """``data1.h5``: RGB patches (N, 3, H, W) from dataset ``data``, as float32."""
    array = _read(path, ("data",))["data"]
    note = " with 3 colour channels first"
    return _checked(array, path, "data", "(N, 3, H, W)", note=note).astype(np.float32)


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


# --- experiment 2: 4-grams ------------------------------------------------------------------


@dataclass
class NgramData:
    """4-gram splits, 0-based: ``words`` (V strings); for each split (train, val, test)
    ``<split>_context`` (N, 3) int64, three words, and ``<split>_target`` (N,), the next."""

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
        """(context, target) of the split "train", "val" or "test"."""
        if name not in NGRAM_SPLITS:
            raise ValueError(f"split must be one of {NGRAM_SPLITS}, got {name!r}")
        return getattr(self, f"{name}_context"), getattr(self, f"{name}_target")


def _word_indices(array, source, name: str, shape: str, vocabulary: int) -> np.ndarray:
    """1-based word indices (integers, or floats holding whole numbers) -> 0-based int64."""
    array = _checked(array, source, name, shape, what="integer word indices")
    if (fraction := array != np.round(array)).any():
        first = tuple(int(i) for i in np.argwhere(fraction)[0])
        raise _problem(source, name, f"must hold whole-number word indices, got {array[first]}")
    if (outside := (array < 1) | (array > vocabulary)).any():
        first = tuple(int(i) for i in np.argwhere(outside)[0])
        raise _problem(
            source,
            name,
            f"holds word index {array[first]:g} at index {first}, allowed range "
            f"1..{vocabulary} (indices start at 1; 'words' has {vocabulary} entries)",
        )
    return array.astype(np.int64) - 1


def ngram_data_from_arrays(arrays: dict[str, np.ndarray], source) -> NgramData:
    """The data2.h5 arrays (1-based word indices), checked, as NgramData."""
    words = _strings(arrays["words"], source, "words")
    fields = {}
    for split, (context_name, target_name) in NGRAM_DATASETS.items():
        context = _word_indices(arrays[context_name], source, context_name, "(N, 3)", len(words))
        target = _word_indices(arrays[target_name], source, target_name, "(N,)", len(words))
        _same_rows(source, target_name, len(context), context_name, len(target))
        fields[f"{split}_context"], fields[f"{split}_target"] = context, target
    return NgramData(words=words, **fields)


def load_ngrams(path: str | Path) -> NgramData:
    """``data2.h5``: 4-gram splits and vocabulary, indices converted to 0-based."""
    names = (*(name for pair in NGRAM_DATASETS.values() for name in pair), "words")
    return ngram_data_from_arrays(_read(path, names), path)


# --- experiment 3: activity series ----------------------------------------------------------


@dataclass
class ActivityData:
    """Labelled series: ``train_x`` (N, T, C) float32, ``train_y`` (N,) int64 classes in
    0..K-1, ``test_x`` (M, T, C), ``test_y`` (M,), ``class_names`` (K strings)."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _classes(array, source, name: str) -> np.ndarray:
    """(N, K) one-hot rows -> (N,) int64 classes."""
    array = _checked(array, source, name, "(N, K)", kinds="biuf")
    good = ((array == 1).sum(axis=1) == 1) & ((array == 0) | (array == 1)).all(axis=1)
    if not good.all():
        row = int(np.argmin(good))
        raise _problem(
            source,
            name,
            f"must be one-hot (exactly one 1 and zeros elsewhere in each row), "
            f"row {row} is {array[row].tolist()}",
        )
    return np.argmax(array, axis=1).astype(np.int64)


def activity_data_from_arrays(arrays: dict[str, np.ndarray], source) -> ActivityData:
    """The data3.h5 arrays (trX, trY, tstX, tstY, optional classes), checked."""
    x = {name: _checked(arrays[name], source, name, "(N, T, C)") for name in ("trX", "tstX")}
    y = {name: _classes(arrays[name], source, name) for name in ("trY", "tstY")}
    for x_name, y_name in (("trX", "trY"), ("tstX", "tstY")):
        _same_rows(source, y_name, len(x[x_name]), x_name, len(y[y_name]))
    if x["trX"].shape[1:] != x["tstX"].shape[1:]:
        steps = f"{x['trX'].shape[1:]}, got {x['tstX'].shape[1:]}"
        raise _problem(source, "tstX", f"must have the steps and channels (T, C) of 'trX' {steps}")
    classes, test_classes = np.shape(arrays["trY"])[1], np.shape(arrays["tstY"])[1]
    if test_classes != classes:
        raise _problem(
            source, "tstY", f"must have K = {classes} columns like 'trY', got {test_classes}"
        )
    names = [f"class {k}" for k in range(classes)]
    if "classes" in arrays:
        names = _strings(arrays["classes"], source, "classes")
        if len(names) != classes:
            raise _problem(
                source, "classes", f"must name the K = {classes} classes, got {len(names)} names"
            )
    x = {name: value.astype(np.float32) for name, value in x.items()}
    return ActivityData(x["trX"], y["trY"], x["tstX"], y["tstY"], names)


def load_activity(path: str | Path) -> ActivityData:
    """``data3.h5``: series (N, T, C) and one-hot labels as classes, class names."""
    arrays = _read(path, ("trX", "trY", "tstX", "tstY"), optional=("classes",))
    return activity_data_from_arrays(arrays, path)
