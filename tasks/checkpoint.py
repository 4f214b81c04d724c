"""Checkpoints: plain arrays in .npz files, never pickles.

Two kinds, both written atomically (:mod:`tasks.files`):

- a *model file* (``autoencoder.npz``, ...): parameter name -> array, what
  :func:`save_model` writes and :func:`load_model` reads;
- a *training checkpoint* (``resume/<run>.npz``): everything needed to continue a
  training run exactly where it stopped (see :func:`write_training_checkpoint`):

  ==================  ==============================================================
  ``meta``            a 0-d unicode array holding one JSON object (below)
  ``model/<name>``    each parameter, as :meth:`Module.state_dict` gives it
  ``optimizer/<key>`` the optimiser's :meth:`state_dict`: ``lr``, ``momentum``,
                      ``velocity.<i>`` (the momentum buffers)
  ==================  ==============================================================

  ``meta``: ``format`` and ``version``; ``identity`` (what must match to resume:
  experiment, run, model settings, dtype, seed, batch size, data fingerprint, ...);
  ``settings`` (what may change on resume: epochs, lr, momentum, clip, device);
  ``epoch`` (epochs completed), ``batch`` (batches of the next epoch already done: 0
  unless stopped by Ctrl-C mid-epoch), ``loss_sum`` and ``seconds`` of those batches;
  ``done``; ``history`` (per-epoch losses, early stopping); ``rng`` (the batch-order
  generator's state at the start of the epoch after the ``epoch`` completed ones) and
  ``backend_rng`` (the initialisers' generator).

Every file is untrusted: it is read entry by entry with NumPy's ``.npy`` header
parser; object (pickle) arrays are refused before any byte of them is decoded; each
entry's size is checked against its header and against MAX_ENTRY_BYTES; and every
problem -- no such file, another format (HDF5, text, a bare .npy), a truncated or
corrupt archive, unexpected entries, wrong names, shapes or dtypes, a NaN or infinite
parameter or momentum buffer, a value beyond the range of the run's dtype --
raises :class:`CheckpointError` naming the file (and the entry). A refused checkpoint
leaves the model and optimiser as they were.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tinygrad_ee import nn, optim
from tinygrad_ee.backend import dtype_name

from .files import write_npz

TRAINING_FORMAT = "tinygrad-ee training checkpoint"
TRAINING_VERSION = 1
# Entry dtypes a checkpoint may hold: booleans, integers, floats, and unicode (meta).
ALLOWED_KINDS = "biufU"
# The largest entry read: a crafted archive can declare (and inflate to) any size.
MAX_ENTRY_BYTES = 8 * 2**30


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, is not a checkpoint, or does not fit the model."""


# --- reading .npz files safely -----------------------------------------------------------

_SIGNATURES = {
    b"PK\x03\x04": None,  # a zip archive: what an .npz file is
    b"PK\x05\x06": None,  # an empty zip archive
    b"\x89HDF\r\n\x1a\n": "an HDF5 file",
    b"\x93NUMPY": "a single-array .npy file",
    b"\x80": "a Python pickle",
}


def _file_kind(path: Path) -> str | None:
    """None for a zip archive, else a description of what the file is instead."""
    with open(path, "rb") as file:
        start = file.read(8)
    if not start:
        return "an empty file"
    for signature, kind in _SIGNATURES.items():
        if start.startswith(signature):
            return kind
    if all(32 <= byte < 127 or byte in b"\t\r\n" for byte in start):
        return "a text file"
    return "not a zip archive"


def _read_entry(source: str, name: str, raw: bytes) -> np.ndarray:
    """One ``.npy`` entry's bytes -> an array, refusing objects and checking its size."""
    stream = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f".npy format version {version} is not supported")
    except (ValueError, SyntaxError, TypeError, OverflowError) as error:
        raise CheckpointError(
            f"{source}: entry {name!r} has no valid .npy header ({error})"
        ) from None
    if dtype.hasobject:
        raise CheckpointError(
            f"{source}: entry {name!r} holds Python objects (dtype {dtype}); "
            "pickled data is never loaded"
        )
    if dtype.kind not in ALLOWED_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise CheckpointError(f"{source}: entry {name!r} has unsupported dtype {dtype}")
    count = math.prod(shape)
    needed, available = count * dtype.itemsize, len(raw) - stream.tell()
    if needed != available:
        raise CheckpointError(
            f"{source}: entry {name!r} should hold shape {tuple(shape)} {dtype} "
            f"({needed} bytes) but holds {available} bytes (truncated or corrupt)"
        )
    array = np.frombuffer(raw, dtype=dtype, count=count, offset=stream.tell())
    if fortran:
        return array.reshape(shape[::-1]).transpose().copy()
    return array.reshape(shape).copy()


def read_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an .npz file, after checking that it is one and holds no objects."""
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise CheckpointError(f"{source}: no such checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{source}: not a regular file")
    try:
        kind = _file_kind(path)
    except OSError as error:
        raise CheckpointError(f"{source}: cannot be read ({error.strerror or error})") from None
    if kind is not None:
        raise CheckpointError(f"{source}: not an .npz checkpoint: it is {kind}")
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise CheckpointError(
                        f"{source}: entry {info.filename!r} is not a NumPy array (.npy)"
                    )
                name = info.filename[: -len(".npy")]
                if name in arrays:
                    raise CheckpointError(f"{source}: entry {name!r} appears twice")
                if info.file_size > MAX_ENTRY_BYTES:
                    raise CheckpointError(
                        f"{source}: entry {name!r} is {info.file_size} bytes, more than the "
                        f"{MAX_ENTRY_BYTES} this program reads"
                    )
                arrays[name] = _read_entry(source, name, archive.read(info))
    except CheckpointError:
        raise
    except Exception as error:  # zipfile, zlib and OS errors of a truncated or corrupt file
        raise CheckpointError(
            f"{source}: not a readable .npz checkpoint (truncated or corrupt?): "
            f"{type(error).__name__}: {error}"
        ) from None
    return arrays


# --- model files -----------------------------------------------------------------------------


def save_model(path: str | Path, model: nn.Module) -> None:
    """Write the model's parameters (name -> array) atomically."""
    write_npz(path, model.state_dict())


def _check_values(source: str, arrays: Mapping[str, np.ndarray], dtype: Any = None) -> None:
    """Every float entry must hold values that ``dtype`` (the run's; None: the entry's
    own) holds as finite numbers: NaN and infinities are refused, and so is a value
    beyond its range, such as 1e300 stored as float64 for a float32 run, which would
    load as inf."""
    for name, array in arrays.items():
        if array.dtype.kind != "f":
            continue
        target = np.dtype(array.dtype if dtype is None else dtype_name(dtype))
        with np.errstate(invalid="ignore"):
            bad = ~(np.abs(array) <= np.finfo(target).max)  # NaN fails the comparison too
        if not bad.any():
            continue
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        value = float(array[index])
        if not math.isfinite(value):
            raise CheckpointError(
                f"{source}: entry {name!r} holds a NaN or infinite value: {value} at index {index}"
            )
        raise CheckpointError(
            f"{source}: entry {name!r} holds {value:g} at index {index}, beyond the range of "
            f"the run's {target} (it would load as inf)"
        )


def load_model(path: str | Path, model: nn.Module) -> nn.Module:
    """Load parameters into ``model`` from a model file or a training checkpoint.

    Every name, shape, dtype and value is checked before any parameter is set: a
    refused file leaves the model as it was.
    """
    arrays = read_arrays(path)
    _check_values(str(path), arrays, model.parameters()[0].dtype)
    if "meta" in arrays:
        _, arrays, _ = _split_training_arrays(str(path), arrays)
    try:
        model.load_state_dict(arrays)
    except ValueError as error:
        raise CheckpointError(f"{path}: does not fit the model: {error}") from None
    return model


# --- training checkpoints ----------------------------------------------------------------


def write_training_checkpoint(
    path: str | Path,
    meta: Mapping[str, Any],
    model_state: Mapping[str, np.ndarray],
    optimizer_state: Mapping[str, Any],
) -> None:
    """Write a training checkpoint atomically (layout: see the module docstring)."""
    meta = {"format": TRAINING_FORMAT, "version": TRAINING_VERSION, **meta}
    arrays = {"meta": np.array(json.dumps(meta, allow_nan=False))}
    arrays.update({f"model/{name}": value for name, value in model_state.items()})
    arrays.update({f"optimizer/{key}": np.asarray(value) for key, value in optimizer_state.items()})
    write_npz(path, arrays)


def _split_training_arrays(
    source: str, arrays: dict[str, np.ndarray]
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    meta_array = arrays.get("meta")
    if meta_array is None:
        found = ", ".join(sorted(arrays)[:8]) or "nothing"
        raise CheckpointError(
            f"{source}: not a training checkpoint (no 'meta' entry; it holds: {found})"
        )
    if meta_array.dtype.kind != "U" or meta_array.shape != ():
        raise CheckpointError(
            f"{source}: entry 'meta' must be a JSON string, got {meta_array.dtype} "
            f"of shape {meta_array.shape}"
        )
    try:
        meta = json.loads(str(meta_array))
    except (ValueError, RecursionError) as error:
        raise CheckpointError(f"{source}: entry 'meta' is not valid JSON ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != TRAINING_FORMAT:
        raise CheckpointError(f"{source}: not a tinygrad-ee training checkpoint")
    if meta.get("version") != TRAINING_VERSION:
        raise CheckpointError(
            f"{source}: training checkpoint version {meta.get('version')!r} is not supported "
            f"(this program reads version {TRAINING_VERSION})"
        )
    model, optimizer = {}, {}
    for name, array in arrays.items():
        if name.startswith("model/"):
            model[name[len("model/") :]] = array
        elif name.startswith("optimizer/"):
            optimizer[name[len("optimizer/") :]] = array
        elif name != "meta":
            raise CheckpointError(f"{source}: unexpected entry {name!r}")
    return meta, model, optimizer


# What meta must hold, checked before anything is restored: name -> (check, description).
def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer too large for a float
        return False


def _is_numbers(value: Any) -> bool:
    return isinstance(value, list) and all(_is_number(item) for item in value)


_META_FIELDS = {
    "identity": (lambda v: isinstance(v, dict), "an object"),
    "settings": (lambda v: isinstance(v, dict), "an object"),
    "epoch": (_is_count, "a non-negative integer"),
    "batch": (_is_count, "a non-negative integer"),
    "loss_sum": (_is_number, "a finite number"),
    "seconds": (lambda v: _is_number(v) and v >= 0, "a non-negative number"),
    "done": (lambda v: isinstance(v, bool), "true or false"),
    "history": (lambda v: isinstance(v, dict), "an object"),
    "rng": (lambda v: isinstance(v, dict), "a random generator state"),
    "backend_rng": (lambda v: isinstance(v, dict), "a random generator state"),
}
_HISTORY_FIELDS = {
    "train_loss": (_is_numbers, "a list of numbers"),
    "validation_loss": (_is_numbers, "a list of numbers"),
    "epoch_seconds": (_is_numbers, "a list of numbers"),
    "stopped_early": (lambda v: isinstance(v, bool), "true or false"),
}


def _check_fields(source: str, where: str, given: dict, fields: dict, exact: bool) -> None:
    unexpected = sorted(set(given) - set(fields))
    if exact and unexpected:
        raise CheckpointError(f"{source}: {where} has unexpected keys {unexpected}")
    for name, (check, description) in fields.items():
        if name not in given:
            raise CheckpointError(f"{source}: {where} lacks {name!r}")
        if not check(given[name]):
            raise CheckpointError(
                f"{source}: {where} {name!r} must be {description}, got {given[name]!r:.80}"
            )


def _check_rng_state(source: str, name: str, state: dict) -> None:
    try:
        np.random.default_rng().bit_generator.state = state
    except Exception as error:  # NumPy raises ValueError, TypeError, KeyError, OverflowError
        raise CheckpointError(
            f"{source}: {name!r} is not a valid random generator state ({error})"
        ) from None


def read_training_checkpoint(
    path: str | Path, dtype: Any = None
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(meta, model arrays, optimiser arrays) of a training checkpoint, all checked
    except against a particular model (that is :func:`restore_training`'s job). Float
    values must be finite in ``dtype``, the run's (None: in each entry's own dtype)."""
    source = str(path)
    arrays = read_arrays(path)
    _check_values(source, arrays, dtype)
    meta, model, optimizer = _split_training_arrays(source, arrays)
    _check_fields(source, "meta", meta, _META_FIELDS, exact=False)
    history = meta["history"]
    _check_fields(source, "history", history, _HISTORY_FIELDS, exact=True)
    epoch = meta["epoch"]
    for name in ("train_loss", "epoch_seconds"):
        if len(history[name]) != epoch:
            raise CheckpointError(
                f"{source}: history {name!r} has {len(history[name])} entries for {epoch} epochs"
            )
    if len(history["validation_loss"]) not in (0, epoch):
        raise CheckpointError(
            f"{source}: history 'validation_loss' has {len(history['validation_loss'])} "
            f"entries for {epoch} epochs"
        )
    if history["stopped_early"] and not meta["done"]:
        raise CheckpointError(f"{source}: history 'stopped_early' is true but 'done' is false")
    for name in ("rng", "backend_rng"):
        _check_rng_state(source, name, meta[name])
    return meta, model, optimizer


def identity_mismatches(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """'key: X in the checkpoint, Y now' for every key on which two identities differ."""
    current = json.loads(json.dumps(current))  # tuples -> lists, as the checkpoint has them
    return [
        f"{key}: {saved.get(key, '(absent)')!r} in the checkpoint, "
        f"{current.get(key, '(absent)')!r} now"
        for key in sorted(set(saved) | set(current))
        if saved.get(key, "(absent)") != current.get(key, "(absent)")
    ]


def restore_training(
    path: str | Path,
    model_arrays: Mapping[str, np.ndarray],
    optimizer_arrays: Mapping[str, np.ndarray],
    model: nn.Module,
    optimizer: optim.Optimizer,
) -> None:
    """Load parameters and optimiser state; on any problem, neither is changed."""
    model_before, optimizer_before = model.state_dict(), optimizer.state_dict()
    try:
        model.load_state_dict(model_arrays)
        optimizer.load_state_dict(optimizer_arrays)
    except ValueError as error:
        model.load_state_dict(model_before)
        optimizer.load_state_dict(optimizer_before)
        raise CheckpointError(f"{path}: does not fit the model: {error}") from None
