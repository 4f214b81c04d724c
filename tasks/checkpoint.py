"""Training checkpoints, ``OUT/resume/<run>.npz`` (layout in docs/reliability.md): the
file and the run's identity. A `Checkpoint` writes a run's state
(`tasks.training.TrainingRun.state_dict`) atomically, and continues a run from it once
the file is checked to be a training checkpoint, of this run (its identity), that the
run accepts (`TrainingRun.load_state_dict`); `prepare` checks an output folder's
checkpoints before anything trains.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .files import CheckpointError, check_values, read_arrays, write_npz
from .progress import note
from .training import ARRAYS, TrainingRun, check_state, describe_position

FOLDER = "resume"  # training checkpoints live in OUT/resume/<run>.npz
FORMAT, VERSION = "tinygrad-ee training checkpoint", 2  # 2: schedules, best epochs


def read_training_checkpoint(path: str | Path, dtype: Any = None) -> tuple[dict, dict[str, dict]]:
    """(meta, {"model", "optimizer", "best": arrays}) of a training checkpoint: its
    format and version, an identity, and a run's state (`tasks.training.check_state`);
    float values finite in ``dtype``. Not checked against a run: see `Checkpoint`."""
    path = Path(path)
    arrays = read_arrays(path)
    check_values(path, arrays, dtype)
    if "meta" not in arrays:
        found = ", ".join(sorted(arrays)[:8]) or "nothing"
        raise CheckpointError(f"{path}: not a training checkpoint (no 'meta'; it holds: {found})")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except (ValueError, RecursionError) as error:
        raise CheckpointError(f"{path}: entry 'meta' is not a JSON string ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a tinygrad-ee training checkpoint")
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: a training checkpoint of version {meta.get('version')!r}, written by "
            f"another version of tinygrad-ee (this one reads version {VERSION})"
        )
    parts: dict[str, dict] = {part: {} for part in ARRAYS}
    for name, array in arrays.items():
        part, _, key = name.partition("/")
        if part not in parts:
            raise CheckpointError(f"{path}: unexpected entry {name!r}")
        parts[part][key] = array
    if not isinstance(meta.get("identity"), dict):
        raise CheckpointError(
            f"{path}: 'identity' must be an object, got {meta.get('identity')!r:.80}"
        )
    try:
        check_state(meta)
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}") from None
    return meta, parts


@dataclass
class Checkpoint:
    """Where a training run is saved, and what must match to continue it. ``identity``:
    JSON-able settings that define the run (one that differs is refused, naming the
    keys); ``device``: recorded, and may change on resume like the training settings
    that are `TrainingConfig.resumable`; ``resume``: continue from ``path`` if it
    exists; ``saved``: where the run stood when last saved or restored."""

    path: Path
    identity: dict[str, Any]
    device: str = "cpu"
    resume: bool = False
    saved: str | None = None

    def save(self, state: dict[str, Any]) -> None:
        """Write a run's ``state`` (`TrainingRun.state_dict`) atomically: its arrays as
        the entries "model/NAME", "optimizer/NAME" and "best/NAME", the rest as JSON in
        "meta", with the format, the version, the identity and the device."""
        meta = {"format": FORMAT, "version": VERSION, "identity": self.identity}
        meta.update({name: value for name, value in state.items() if name not in ARRAYS})
        meta["settings"] = {**state["settings"], "device": self.device}
        arrays = {"meta": np.array(json.dumps(meta, allow_nan=False))}
        for part in ARRAYS:
            arrays.update({f"{part}/{name}": value for name, value in state[part].items()})
        write_npz(self.path, arrays)
        self.saved = describe_position(state["epoch"], state["batch"])

    def restore(self, run: TrainingRun) -> None:
        """Continue ``run`` from the checkpoint, if ``resume`` and it exists. One of
        another run, or that the run refuses, is a CheckpointError naming the file and
        the field, and nothing changes."""
        if not (self.resume and self.path.exists()):
            return
        meta, parts = read_training_checkpoint(self.path, run.model.parameters()[0].dtype)
        self._check_identity(meta["identity"])
        try:
            run.load_state_dict({**meta, **parts})
        except ValueError as error:
            raise CheckpointError(f"{self.path}: {error}") from None
        self.saved = describe_position(run.epoch, run.batch)
        now, before = {**run.config.resumable(), "device": self.device}, meta["settings"]
        changed = [f"{k} {v} (was {before.get(k)})" for k, v in now.items() if before.get(k) != v]
        changes = f" with {', '.join(changed)}" if changed else ""
        note(f"{run.description}: resuming from {self.path} ({self.saved}){changes}")

    def _check_identity(self, saved: dict[str, Any]) -> None:
        """Refuse the checkpoint of another run, naming the settings that differ."""
        now = json.loads(json.dumps(self.identity))  # as saved: tuples become lists
        differ = [
            f"{key}: {saved.get(key, '(absent)')!r} in the checkpoint, "
            f"{now.get(key, '(absent)')!r} now"
            for key in sorted(set(saved) | set(now))
            if saved.get(key, "(absent)") != now.get(key, "(absent)")
        ]
        if differ:
            raise CheckpointError(
                f"{self.path}: cannot resume: it belongs to a different run ({'; '.join(differ)})"
                ". Resume with the same settings, or start afresh in another --out"
            )


def prepare(out: Path, folders: Iterable[tuple[str, Path]], resume: bool, dtype: str) -> None:
    """Before anything trains, for each (experiment, folder) in ``out``: refuse a
    checkpoint folder leading outside ``out``, remove leftover temporary files, and read
    every checkpoint. Without ``resume``, an unfinished run's is never overwritten
    (finished runs' are removed); with it and none of this command's, say so."""
    found, unfinished = [], []
    for experiment, folder in folders:
        folder = folder / FOLDER
        if not folder.is_dir():
            continue
        if not folder.resolve().is_relative_to(out.resolve()):
            raise CheckpointError(
                f"{folder} leads to {folder.resolve()}, outside --out ({out.resolve()}): "
                "nothing there is read, written or deleted. Replace the link by a folder, "
                "or choose another --out"
            )
        for leftover in folder.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)
        for path in sorted(folder.glob("*.npz")):
            try:
                meta, _ = read_training_checkpoint(path, dtype)
            except CheckpointError as error:
                raise CheckpointError(
                    f"{error}. It cannot be resumed: remove it (or all of {folder}/, or "
                    "choose another --out) to train that run afresh"
                ) from None
            found += [path] if meta["identity"].get("experiment") == experiment else []
            if not meta["done"]:
                unfinished.append(f"{path} ({describe_position(meta['epoch'], meta['batch'])})")
    if resume and not found:
        note(f"--resume: no training checkpoint of this command in {out}: starting afresh")
    elif not resume and unfinished:
        raise CheckpointError(
            f"{out} holds the checkpoint of an unfinished run: {', '.join(unfinished)}. "
            f"Continue it with --resume, or remove {out / FOLDER}/ (or choose another --out) "
            "to start afresh"
        )
    elif not resume:
        for path in found:
            path.unlink()
