"""The experiments' data files, HDF5 in the layouts of docs/experiments.md: reading
them and checking everything read. Every problem with a file is a `DataError` naming
the file, the dataset, what was expected and what was found.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .checks import DataError, checked, problem

NGRAM_SPLITS = ("train", "val", "test")
NGRAM_DATASETS = {
    "train": ("trainx", "traind"),
    "val": ("valx", "vald"),
    "test": ("testx", "testd"),
}
MAX_DATASET_BYTES = 8 * 2**30  # a few bytes of HDF5 can declare a dataset of any size


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
        raise problem(source, name, f"is missing (the file holds: {found})")
    if isinstance(link, h5py.ExternalLink):
        raise problem(source, name, f"is a link to another file ({link.filename}): not followed")
    node = handle.get(name)
    if not isinstance(node, h5py.Dataset):
        raise problem(source, name, f"must be a dataset, got {type(node).__name__}")
    if node.is_virtual or node.external:
        raise problem(source, name, "keeps its data in other files: not read")
    if node.shape is None:
        raise problem(source, name, "holds no data (it has a null, empty dataspace)")
    if node.size * node.dtype.itemsize > MAX_DATASET_BYTES:
        size = node.size * node.dtype.itemsize
        raise problem(source, name, f"holds {size} bytes, more than the {MAX_DATASET_BYTES} read")
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


def _strings(array, source, name: str) -> list[str]:
    """A 1-d array of byte strings (fixed or variable length) as Python strings."""
    array = checked(array, source, name, "(V,)", "SUO", "byte strings", ", a 1-d array")
    items = array.tolist()
    for index, item in enumerate(items):
        try:
            items[index] = item.decode("utf-8") if isinstance(item, bytes) else item
        except UnicodeDecodeError:
            raise problem(source, name, f"entry {index} is not UTF-8: {item!r}") from None
        if not isinstance(items[index], str):
            raise problem(source, name, f"entry {index} is not a string: {item!r}")
    return items


def _same_rows(source, name: str, count: int, of: str, rows: int) -> None:
    if rows != count:
        expected = f"expected {count} rows, got {rows}"
        raise problem(source, name, f"must have one row per row of '{of}': {expected}")


# --- experiment 1: image patches ------------------------------------------------------------


def load_patches(path: str | Path) -> np.ndarray:
    """``data1.h5``: RGB patches (N, 3, H, W) from dataset ``data``, as float32."""
    array = _read(path, ("data",))["data"]
    note = " with 3 colour channels first"
    return checked(array, path, "data", "(N, 3, H, W)", note=note).astype(np.float32)


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
    array = checked(array, source, name, shape, what="integer word indices")
    if (fraction := array != np.round(array)).any():
        first = tuple(int(i) for i in np.argwhere(fraction)[0])
        raise problem(source, name, f"must hold whole-number word indices, got {array[first]}")
    if (outside := (array < 1) | (array > vocabulary)).any():
        first = tuple(int(i) for i in np.argwhere(outside)[0])
        raise problem(
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
    array = checked(array, source, name, "(N, K)", kinds="biuf")
    good = ((array == 1).sum(axis=1) == 1) & ((array == 0) | (array == 1)).all(axis=1)
    if not good.all():
        row = int(np.argmin(good))
        raise problem(
            source,
            name,
            f"must be one-hot (exactly one 1 and zeros elsewhere in each row), "
            f"row {row} is {array[row].tolist()}",
        )
    return np.argmax(array, axis=1).astype(np.int64)


def activity_data_from_arrays(arrays: dict[str, np.ndarray], source) -> ActivityData:
    """The data3.h5 arrays (trX, trY, tstX, tstY, optional classes), checked."""
    x = {name: checked(arrays[name], source, name, "(N, T, C)") for name in ("trX", "tstX")}
    y = {name: _classes(arrays[name], source, name) for name in ("trY", "tstY")}
    for x_name, y_name in (("trX", "trY"), ("tstX", "tstY")):
        _same_rows(source, y_name, len(x[x_name]), x_name, len(y[y_name]))
    if x["trX"].shape[1:] != x["tstX"].shape[1:]:
        steps = f"{x['trX'].shape[1:]}, got {x['tstX'].shape[1:]}"
        raise problem(source, "tstX", f"must have the steps and channels (T, C) of 'trX' {steps}")
    classes, test_classes = np.shape(arrays["trY"])[1], np.shape(arrays["tstY"])[1]
    if test_classes != classes:
        raise problem(
            source, "tstY", f"must have K = {classes} columns like 'trY', got {test_classes}"
        )
    names = [f"class {k}" for k in range(classes)]
    if "classes" in arrays:
        names = _strings(arrays["classes"], source, "classes")
        if len(names) != classes:
            raise problem(
                source, "classes", f"must name the K = {classes} classes, got {len(names)} names"
            )
    x = {name: value.astype(np.float32) for name, value in x.items()}
    return ActivityData(x["trX"], y["trY"], x["tstX"], y["tstY"], names)


def load_activity(path: str | Path) -> ActivityData:
    """``data3.h5``: series (N, T, C) and one-hot labels as classes, class names."""
    arrays = _read(path, ("trX", "trY", "tstX", "tstY"), optional=("classes",))
    return activity_data_from_arrays(arrays, path)
