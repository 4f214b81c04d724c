"""Training checkpoints, ``OUT/resume/<run>.npz`` (layout in docs/reliability.md): a
`Checkpoint` saves a `tasks.training.TrainingRun` and continues it once the file is
checked to be one, of this run, at a position it can reach; `prepare` checks an output
folder's checkpoints before anything trains.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .files import CheckpointError, check_values, read_arrays, write_npz
from .training import History, TrainingRun, describe_position, note

FOLDER = "resume"  # training checkpoints live in OUT/resume/<run>.npz
FORMAT, VERSION = "tinygrad-ee training checkpoint", 2  # 2: schedules, best epochs
POSITION = ("epoch", "batch", "loss_sum", "seconds")  # where a TrainingRun stands


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    try:
        return not isinstance(value, bool) and math.isfinite(value)
    except (TypeError, OverflowError):  # not a number; an integer too large for a float
        return False


_OBJECT = (lambda value: isinstance(value, dict), "an object")
_FLAG = (lambda value: isinstance(value, bool), "true or false")
_NUMBERS = (lambda value: isinstance(value, list) and all(map(_number, value)), "numbers")
_META = {  # what meta must hold: name -> (check, what it must be)
    **dict.fromkeys(("identity", "settings", "history", "rng", "backend_rng", "schedule"), _OBJECT),
    **dict.fromkeys(("epoch", "batch"), (_count, "a non-negative integer")),
    "loss_sum": (_number, "a finite number"),
    "seconds": (lambda value: _number(value) and value >= 0, "a non-negative number"),
    "done": _FLAG,
}
_HISTORY = {**dict.fromkeys(("train_loss", "validation_loss", "epoch_seconds"), _NUMBERS)}
_HISTORY["stopped_early"] = _FLAG


def _check_fields(path: Path, where: str, given: dict, fields: dict, exact: bool) -> None:
    if exact and set(given) - set(fields):
        raise CheckpointError(
            f"{path}: {where} has unexpected keys {sorted(set(given) - set(fields))}"
        )
    for name, (check, description) in fields.items():
        if name not in given or not check(given[name]):
            got = f"got {given[name]!r:.80}" if name in given else "it is missing"
            raise CheckpointError(f"{path}: {where} {name!r} must be {description}, {got}")


def read_training_checkpoint(path: str | Path, dtype: Any = None) -> tuple[dict, dict[str, dict]]:
    """(meta, {"model", "optimizer", "best": arrays}) of a training checkpoint, checked
    (but not against a model); its float values must be finite in ``dtype``."""
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
    parts: dict[str, dict] = {"model": {}, "optimizer": {}, "best": {}}
    for name, array in arrays.items():
        part, _, key = name.partition("/")
        if part not in parts:
            raise CheckpointError(f"{path}: unexpected entry {name!r}")
        parts[part][key] = array
    _check_fields(path, "meta", meta, _META, exact=False)
    _check_fields(path, "history", meta["history"], _HISTORY, exact=True)
    if meta["history"]["stopped_early"] and not meta["done"]:
        raise CheckpointError(f"{path}: history 'stopped_early' is true but 'done' is false")
    for name in ("rng", "backend_rng"):
        try:
            np.random.default_rng().bit_generator.state = meta[name]
        except Exception:  # ValueError, TypeError, KeyError, OverflowError
            raise CheckpointError(f"{path}: {name!r} is not a random generator state") from None
    return meta, parts


@dataclass
class Checkpoint:
    """Where a training run is saved, and what must match to continue it. ``identity``:
    JSON-able settings that define the run (one that differs is refused, naming the
    keys); ``device``: recorded, and may change on resume like epochs, lr, momentum and
    clip; ``resume``: continue from ``path`` if it exists; ``saved``: where the run
    stood when last saved or restored."""

    path: Path
    identity: dict[str, Any]
    device: str = "cpu"
    resume: bool = False
    saved: str | None = None

    def settings(self, run: TrainingRun) -> dict[str, Any]:
        """What may change on resume."""
        names = ("epochs", "lr", "momentum", "clip")
        return {**{name: getattr(run.config, name) for name in names}, "device": self.device}

    def save(self, run: TrainingRun, done: bool) -> None:
        meta = {
            **{"format": FORMAT, "version": VERSION, "identity": self.identity, "done": done},
            **{name: getattr(run, name) for name in POSITION},
            "settings": self.settings(run),
            "history": asdict(run.history),
            "rng": run.rng.bit_generator.state,
            "backend_rng": run.model.parameters()[0].backend.rng_state(),
            "schedule": run.schedule.state_dict(),
        }
        arrays = {"meta": np.array(json.dumps(meta, allow_nan=False))}
        parts = {"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict()}
        for part, state in {**parts, "best": run.best or {}}.items():
            arrays.update({f"{part}/{k}": v for k, v in state.items()})
        write_npz(self.path, arrays)
        self.saved = describe_position(run.epoch, run.batch)

    def restore(self, run: TrainingRun) -> None:
        """Continue ``run`` from the checkpoint, if ``resume`` and it exists. One of
        another run, or that does not fit, is refused and nothing changed."""
        if not (self.resume and self.path.exists()):
            return
        dtype = run.model.parameters()[0].dtype
        meta, parts = read_training_checkpoint(self.path, dtype)
        self._check_fits(meta, run)
        if run.config.best_epoch and meta["history"]["validation_loss"] and not parts["best"]:
            raise CheckpointError(f"{self.path}: holds no parameters of its best epoch (best/)")
        chosen = {name: getattr(run.optimizer, name) for name in run.optimizer.HYPERPARAMETERS}
        model_before, optimizer_before = run.model.state_dict(), run.optimizer.state_dict()
        schedule = {**run.schedule.state_dict(), "count": meta["schedule"].get("count")}
        try:
            if parts["best"]:  # checked by loading them; the last parameters come next
                run.model.load_state_dict(parts["best"])
            run.model.load_state_dict(parts["model"])
            run.optimizer.load_state_dict(parts["optimizer"])
            for name, value in chosen.items():  # the command's lr, momentum, ...
                setattr(run.optimizer, name, value)
            run.schedule.load_state_dict(schedule)  # its count; the command's lr, epochs
        except ValueError as error:
            run.model.load_state_dict(model_before)
            run.optimizer.load_state_dict(optimizer_before)
            raise CheckpointError(f"{self.path}: does not fit the model: {error}") from None
        run.best = (parts["best"] or None) if run.config.best_epoch else None
        run.rng.bit_generator.state = meta["rng"]
        run.model.parameters()[0].backend.set_rng_state(meta["backend_rng"])
        run.history = History(**meta["history"])
        for name in POSITION:
            setattr(run, name, meta[name])
        self.saved = describe_position(run.epoch, run.batch)
        changed = [
            f"{key} {value} (was {meta['settings'].get(key)})"
            for key, value in self.settings(run).items()
            if meta["settings"].get(key) != value
        ]
        changes = f" with {', '.join(changed)}" if changed else ""
        note(f"{run.description}: resuming from {self.path} ({self.saved}){changes}")

    def _check_fits(self, meta: dict, run: TrainingRun) -> None:
        """Refuse the checkpoint of another run, or of a position this run cannot reach."""
        saved, now = meta["identity"], json.loads(json.dumps(self.identity))  # tuples: lists
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
        if meta["history"]["stopped_early"] and not run.config.patience:
            raise CheckpointError(
                f"{self.path}: history 'stopped_early' is true, but this run has no early "
                "stopping: the file was changed or belongs to another program"
            )
        if meta["batch"] >= run.batches_per_epoch:
            raise CheckpointError(
                f"{self.path}: stopped after batch {meta['batch']} of an epoch of "
                f"{run.batches_per_epoch} batches"
            )
        if meta["batch"] and meta["epoch"] >= run.config.epochs:
            needed = meta["epoch"] + 1  # part-way through an epoch: no shorter run ends there
            raise CheckpointError(
                f"{self.path}: stopped part-way through epoch {needed}, beyond --epochs "
                f"{run.config.epochs}: resume with --epochs {needed} or more"
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
