"""Model checkpoints: parameters as plain arrays in an .npz file, never pickles."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from tinygrad_ee import nn

from .files import write_npz


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


def save_model(path: str | Path, model: nn.Module) -> None:
    """Write the model's parameters (name -> array) atomically."""
    write_npz(path, model.state_dict())


def read_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of an .npz file, refusing pickled objects and unreadable files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except ValueError as error:  # what NumPy raises for object arrays without pickles
        raise CheckpointError(f"{path}: refused ({error})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise CheckpointError(f"{path}: not a readable .npz checkpoint ({error})") from None


def load_model(path: str | Path, model: nn.Module) -> nn.Module:
    """Load parameters into ``model``: every name and shape is checked before any is set."""
    arrays = read_arrays(path)
    try:
        model.load_state_dict(arrays)
    except ValueError as error:
        raise CheckpointError(f"{path}: does not fit the model: {error}") from None
    return model
