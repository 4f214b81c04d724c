"""Writing results safely: every file is written whole or not at all.

Each writer writes to a temporary file in the destination folder, flushes and
fsyncs it, renames it over the destination (atomic on POSIX), then fsyncs the folder
so that the rename itself survives a power cut. A crash at any moment leaves either
the old file or the new one, never a torn one; a crash before the rename may leave a
temporary ``.<name>.*.tmp`` sibling behind, which no reader looks at.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np


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
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
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
    with atomic_open(path) as file:
        json.dump(value, file, indent=2, default=_to_json)
        file.write("\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path) as file:
        file.write(text)


def write_npz(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Save plain numeric arrays (no pickles) as an .npz file."""
    with atomic_open(path, "wb") as file:
        np.savez(file, **{name: np.asarray(value) for name, value in arrays.items()})


def save_figure(path: str | Path, draw: Callable[[Any], None], size=(6.0, 4.0)) -> None:
    """Draw on a fresh matplotlib figure (Agg, no screen needed) and save it as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure = plt.figure(figsize=size)
    try:
        draw(figure)
        with atomic_open(path, "wb") as file:
            figure.savefig(file, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(figure)


def _to_json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
