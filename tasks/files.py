"""Files written whole or not at all: strict JSON, text, .npz, HDF5, the exported data.

Each writer writes to a temporary file in the destination folder, flushes and
fsyncs it, renames it over the destination (atomic on POSIX), then fsyncs the folder
so that the rename itself survives a power cut. A crash at any moment leaves either
the old file or the new one, never a torn one; a crash before the rename may leave a
temporary ``.<name>.*.tmp`` sibling behind, which no reader looks at.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import h5py
import numpy as np

from data import embedded


def _read_umask() -> int:
    mask = os.umask(0o022)  # the only portable way to read it is to set it, then restore
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; on success it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode, encoding=None if "b" in mode else "utf-8") as file:
            os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes 0600; give what open() would
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        if isinstance(error, OSError) and error.filename is None:  # a full disk names no file
            raise OSError(error.errno, error.strerror or str(error), str(path)) from error
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; Windows cannot open folders)."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_json(path: str | Path, value: Any) -> None:
    """Strict JSON, which any reader parses: NaN and infinities are written as null."""
    with atomic_open(path) as file:
        json.dump(_strict(value), file, indent=2, allow_nan=False)
        file.write("\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path) as file:
        file.write(text)


def write_npz(path: str | Path, arrays: Mapping[str, np.ndarray], compressed=False) -> None:
    """Save plain numeric arrays (no pickles) as an .npz file."""
    save = np.savez_compressed if compressed else np.savez
    with atomic_open(path, "wb") as file:
        save(file, **{name: np.asarray(value) for name, value in arrays.items()})


def write_h5(path: Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Save arrays as the datasets of an HDF5 file."""
    with atomic_open(path, "w+b") as file, h5py.File(file, "w") as handle:
        for name, array in arrays.items():
            handle.create_dataset(name, data=array)
    return path


def export_defaults(out: str | Path, **sizes: int) -> list[Path]:
    """Write the embedded data as data1.h5, data2.h5 and data3.h5 in the folder ``out``
    (``sizes``: see `data.embedded.files`); returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return [write_h5(out / name, arrays) for name, arrays in embedded.files(**sizes).items()]


def _strict(value: Any) -> Any:
    """``value`` with NumPy numbers and arrays as Python ones, paths as strings, tuples
    as lists, and non-finite floats as None."""
    if isinstance(value, (np.generic, np.ndarray)):
        value = value.tolist()
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
