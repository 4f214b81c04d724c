"""What an experiment is (`Experiment`: its command, options, recipes and steps), the
typed settings of one run (`Common`, `Settings`: plain data, built once by the command
line; nothing below it sees argparse), and a run's recipe as options (`describe_recipe`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .options import as_arguments, option, positive_int, seed
from .training import TrainingConfig

QUICK_EPOCHS = 2
RECIPES = ("modern", "original")  # each experiment's defaults: Experiment.recipes


@dataclass
class Common:
    """The options of every experiment command."""

    recipe: str = option(
        "modern", "the defaults below: modern (chosen on validation data) or the original "
        "experiment's (docs/results.md)", choices=RECIPES,
    )  # fmt: skip
    device: str = option("cpu", "cpu, cuda or cuda:N", resumable=True)
    data: Path | None = option(
        None, "an HDF5 file in the experiment's layout, or a folder holding data1.h5, data2.h5, "
        "data3.h5 (for `all`: such a folder) (default: the embedded data)", parse=Path,
    )  # fmt: skip
    dtype: str = option("float32", "", choices=["float32", "float64"])
    seed: int = option(
        0, "random seed, 0 to 2**64 - 1: initialisation, batch order, embedded data", parse=seed
    )
    out: Path | None = option(
        None, "output folder (default: runs/<experiment>-<timestamp>)", parse=Path
    )
    quick: bool = option(False, f"{QUICK_EPOCHS} epochs on a subset of the data: a smoke run")
    resume: bool = option(False, "continue the run stopped in --out (needed); see below")
    detect_anomaly: bool = option(
        False, "stop at the first op making a NaN or infinity, naming it (slower: checks each op)",
        resumable=True,
    )  # fmt: skip
    blas_threads: int = option(
        1, "threads for NumPy's BLAS (more than free cores slow these small products)",
        parse=positive_int, resumable=True,
    )  # fmt: skip


@dataclass(kw_only=True)
class Settings(Common):
    """Everything one experiment run takes: the common options (``out`` its folder,
    ``data`` its file or None), its training settings and its own options."""

    experiment: str  # its name
    out: Path
    training: TrainingConfig
    options: Any


@dataclass(frozen=True)
class Experiment:
    """One experiment: its command, the file it reads from a --data folder, its
    options, its recipes (the defaults of each --recipe), and what it does."""

    name: str
    data_file: str
    description: str  # for --help; its first line is the summary
    options: type  # a dataclass of `option` fields
    recipes: dict[str, tuple[TrainingConfig, Any]]  # recipe -> (training, options)
    run: Callable[[Settings], dict]  # train, evaluate, plot: the figures of metrics.json
    report: Callable[[dict], str]  # report.md, from the metrics
    summary: Callable[[dict], str]  # one line, for the terminal and `all`'s report
    validated: bool = True  # False: no validation split (TrainingConfig.VALIDATED refused)


def describe_recipe(settings: Settings, experiment: Experiment) -> str:
    """The recipe of a run, for report.md and metrics.json: its training settings and
    the options that the experiment's recipes set differently, as command-line options
    (a value the data's size sets per model, still None here, is left to the rules)."""
    modern, original = (asdict(experiment.recipes[name][1]) for name in RECIPES)
    values = {
        k: v for k, v in asdict(settings.training).items() if k not in ("progress", "compile")
    }
    values.update({k: v for k, v in asdict(settings.options).items() if modern[k] != original[k]})
    configs = (settings.training, settings.options)
    ruled = {f.name for c in configs for f in fields(c) if f.metadata.get("rule")}
    values = {k: v for k, v in values.items() if not (v is None and k in ruled)}
    return f"--recipe {settings.recipe} {as_arguments(values)}"
