"""The files a run writes, each whole or not at all (`atomic_open`), and the .npz files
it reads, as untrusted: ``numpy.load(allow_pickle=False)`` refuses object arrays before
decoding them, and every problem is a `CheckpointError` naming the file and the entry.
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

from tinygrad_ee import nn
from tinygrad_ee.backend import dtype_name

from .data import embedded, unholdable

MAX_ENTRY_BYTES = 8 * 2**30  # a small archive can declare (and inflate to) any size
_KINDS = {  # what a file is, by its first bytes; None: a zip archive, as an .npz is
    b"PK\x03\x04": None,
    b"PK\x05\x06": None,
    b"\x89HDF\r\n\x1a\n": "an HDF5 file",
    b"\x93NUMPY": "a single-array .npy file",
    b"\x80": "a Python pickle",
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, is not a checkpoint, or does not fit the run."""


_UMASK = os.umask(0o022)  # the only portable way to read it is to set it, then restore
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """A temporary sibling of ``path`` open for writing; flushed, fsynced and renamed
    over ``path`` on success, the folder then fsynced: a crash leaves the old file or the
    new one (at worst a stray ``.<name>.*.tmp``)."""
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
    if os.name == "posix":  # make the rename durable (Windows cannot open folders)
        descriptor = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def write_json(path: str | Path, value: Any) -> None:
    """Strict JSON, which any reader parses: NumPy values as Python ones, paths as
    strings, tuples as lists, and NaN and infinities as null."""
    # json writes non-finite floats as the tokens NaN and Infinity; reading them back
    # as None leaves only what strict JSON allows
    text = json.dumps(value, default=_plain)
    with atomic_open(path) as file:
        json.dump(json.loads(text, parse_constant=lambda token: None), file, indent=2)
        file.write("\n")


def _plain(value: Any) -> Any:
    """What json.dumps writes for a value it does not know."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path) as file:
        file.write(text)


def write_npz(path: str | Path, arrays: Mapping[str, Any], compressed: bool = False) -> None:
    """Save plain numeric arrays (no pickles) as an .npz file."""
    save = np.savez_compressed if compressed else np.savez
    with atomic_open(path, "wb") as file:
        save(file, **{name: np.asarray(value) for name, value in arrays.items()})


def export_defaults(out: str | Path, **sizes: int) -> list[Path]:
    """Write the embedded data as data1.h5, data2.h5 and data3.h5 in the folder ``out``
    (``sizes``: see `data.embedded.files`); returns their paths."""
    paths = []
    for name, arrays in embedded.files(**sizes).items():
        paths.append(Path(out) / name)
        with atomic_open(paths[-1], "w+b") as file, h5py.File(file, "w") as handle:
            for dataset, array in arrays.items():
                handle.create_dataset(dataset, data=array)
    return paths


def _file_kind(path: Path) -> str | None:
    """None for a zip archive, else what the file is instead."""
    try:
        with open(path, "rb") as file:
            start = file.read(8)
    except OSError as error:
        raise CheckpointError(f"{path}: cannot be read ({error.strerror or error})") from None
    kinds = [kind for signature, kind in _KINDS.items() if start.startswith(signature)]
    if kinds or not start:
        return kinds[0] if kinds else "an empty file"
    text = all(32 <= byte < 127 or byte in b"\t\r\n" for byte in start)
    return "a text file" if text else "not a zip archive"


def read_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an .npz file, which must hold numbers and strings only."""
    path, arrays, name = Path(path), {}, None
    if not path.is_file():
        problem = "not a regular file" if path.exists() else "no such checkpoint file"
        raise CheckpointError(f"{path}: {problem}")
    if (kind := _file_kind(path)) is not None:
        raise CheckpointError(f"{path}: not an .npz checkpoint: it is {kind}")
    try:
        with open(path, "rb") as file, np.load(file, allow_pickle=False) as archive:
            for info in archive.zip.infolist():
                name = info.filename.removesuffix(".npy")
                if name == info.filename or info.file_size > MAX_ENTRY_BYTES:
                    size = f"of at most {MAX_ENTRY_BYTES} bytes"
                    raise CheckpointError(f"{path}: entry {name!r} is not a .npy array {size}")
                array = arrays[name] = archive[name]
                if array.dtype.kind not in "biufU" or array.dtype.fields:
                    raise CheckpointError(f"{path}: entry {name!r} has dtype {array.dtype}")
    except CheckpointError:
        raise
    except Exception as error:  # NumPy, zipfile, zlib, OS and memory errors
        if "allow_pickle" in str(error):
            raise CheckpointError(
                f"{path}: entry {name!r} holds Python objects; pickled data is never loaded"
            ) from None
        raise CheckpointError(
            f"{path}: not a readable .npz checkpoint (truncated or corrupt?): "
            f"{type(error).__name__}: {error}"
        ) from None
    return arrays


def check_values(path: Path, arrays: dict[str, np.ndarray], dtype: Any) -> None:
    """Every float entry must be finite in ``dtype`` (the run's; None: the entry's)."""
    dtype = None if dtype is None else dtype_name(dtype)
    for name, array in arrays.items():
        if (bad := unholdable(array, dtype)) is None:
            continue
        index, value = bad
        what = f"a NaN or infinite value: {value} at index {index}"
        if math.isfinite(value):
            what = f"{value:g} at index {index}, beyond the range of the run's {dtype}"
            what += " (it would load as inf)"
        raise CheckpointError(f"{path}: entry {name!r} holds {what}")


def save_model(path: str | Path, model: nn.Module) -> None:
    """Write the model's parameters (name -> array) atomically."""
    write_npz(path, model.state_dict())


def load_model(path: str | Path, model: nn.Module) -> nn.Module:
    """Load parameters into ``model`` from a model file or a training checkpoint (its
    ``model/`` entries); a refused file leaves the model as it was."""
    arrays = read_arrays(path)
    check_values(Path(path), arrays, model.parameters()[0].dtype)
    if "meta" in arrays:
        arrays = {k.removeprefix("model/"): v for k, v in arrays.items() if k.startswith("model/")}
    try:
        model.load_state_dict(arrays)
    except ValueError as error:
        raise CheckpointError(f"{path}: does not fit the model: {error}") from None
    return model
