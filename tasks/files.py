"""Writing results safely: every file is written whole or not at all.

Each writer writes to a temporary file in the destination folder, flushes and
fsyncs it, then renames it over the destination (atomic on POSIX), so a crash at
any moment leaves either the old file or the new one, never a torn one.
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


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; on success it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode, encoding=None if "b" in mode else "utf-8") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


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
