"""Train, evaluate and report the experiments described in docs/experiments.md.

    tinygrad-ee all                       # the three experiments on the embedded data
    tinygrad-ee autoencoder --quick       # a smoke run in seconds
    tinygrad-ee activity --cell gru --device cuda --data data3.h5
    tinygrad-ee data export --out DIR     # the embedded data as data1/2/3.h5
    tinygrad-ee activity --out runs/a --resume   # continue a stopped run

Each run writes metrics.json, PNG figures, .npz checkpoints and report.md to --out
(default runs/<experiment>-<timestamp>). `python -m tinygrad_ee.tasks` is the same command.
"""

from __future__ import annotations

import sys

EXIT_ERROR, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 130

try:  # Ctrl-C while the libraries load (a quarter second): no traceback, as later on
    import argparse
    import contextlib
    import platform
    import shlex
    import textwrap
    import time
    from dataclasses import asdict, replace
    from datetime import datetime
    from importlib import metadata
    from pathlib import Path

    from threadpoolctl import threadpool_limits

    import tinygrad_ee as tg
    from tinygrad_ee import DeviceError, get_backend

    from . import activity, autoencoder, checkpoint, language_model
    from .data import DataError, is_folder
    from .experiment import QUICK_EPOCHS, Common, Experiment, Settings, describe_recipe
    from .files import CheckpointError, export_defaults, write_json, write_npz, write_text
    from .options import add_arguments, dtype_options, dtype_problem, given, resumable_flags
    from .progress import note
    from .shared import TooLarge
    from .training import TrainingConfig, TrainingDiverged, TrainingInterrupted
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(EXIT_INTERRUPTED)

EXPERIMENTS = {
    e.name: e for e in (autoencoder.EXPERIMENT, language_model.EXPERIMENT, activity.EXPERIMENT)
}

MAY_CHANGE = ", ".join(resumable_flags(TrainingConfig, Common))  # on resume
MAY_CHANGE = textwrap.fill(MAY_CHANGE, 86, subsequent_indent="  ", break_on_hyphens=False)
EPILOG = f"""\
checkpoints and --resume:
  Every training run writes OUT/{checkpoint.FOLDER}/<run>.npz atomically at each epoch end
  (with `all`: in each experiment's folder). The same command with --resume continues it
  and ends as an uninterrupted run would (bit for bit on the CPU). Only these may change:
  {MAY_CHANGE}.
  Without --resume, an --out holding an unfinished run is refused. Ctrl-C finishes the
  batch, saves and exits.

exit status:
  0    success
  {EXIT_ERROR}    usage error (an option out of range, or that --dtype rounds to 0 or inf);
       sizes too large for the device's memory; a missing, unreadable or invalid data or
       checkpoint file, or data too small; an unavailable device; an --out that cannot be
       written, holds an unfinished run (without --resume) or a checkpoint folder
       linking outside it
  {EXIT_DIVERGED}    training diverged: a loss became NaN or infinite (or, with
       --detect-anomaly, an op made one); the last good checkpoint is kept
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C); the training state is saved: rerun with --resume
"""


def build_parser() -> argparse.ArgumentParser:
    raw = {"epilog": EPILOG, "formatter_class": argparse.RawDescriptionHelpFormatter}
    parser = argparse.ArgumentParser(prog="tinygrad-ee", description=__doc__, **raw)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for e in EXPERIMENTS.values():
        summary = e.description.split("\n")[0]
        sub = commands.add_parser(e.name, help=summary, description=e.description, **raw)
        _add_experiment_arguments(sub, [e], e.recipes["modern"][0])
    summary = "the three experiments, each in its folder of OUT, and a report.md linking them"
    everything = commands.add_parser("all", help=summary, description=summary + ".", **raw)
    _add_experiment_arguments(everything, list(EXPERIMENTS.values()), TrainingConfig)
    data = commands.add_parser("data", help="the embedded default data")
    data = data.add_subparsers(dest="data_command", required=True)
    export = data.add_parser("export", help="write data1.h5, data2.h5, data3.h5")
    export.add_argument("--out", type=Path, required=True, help="folder to write to")
    rebuild = data.add_parser("rebuild-ngrams", help="rebuild the 4-grams of tasks/data/ngrams.npz")
    rebuild.add_argument("--out", type=Path, help="(default: the shipped file)")
    demo = commands.add_parser("demo", help="train a tiny MLP on two rings with the engine alone")
    demo.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    demo.add_argument("--steps", type=int, default=300, help="gradient steps (default: 300)")
    return parser


def _add_experiment_arguments(parser, experiments, training) -> None:
    """The common options (always set), training's (``training``: defaults shown, or the
    class: each experiment's own), and each experiment's own options."""
    add_arguments(parser, Common)
    parser.set_defaults(**asdict(Common()))  # the command line reads these itself
    shared, original = isinstance(training, type), experiments[0].recipes["original"]
    add_arguments(parser, training, shared, None if shared else original[0])
    for e in experiments:
        modern, original = e.recipes["modern"][1], e.recipes["original"][1]
        add_arguments(parser.add_argument_group(e.name), modern, original=original)


def _check_usage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors argparse cannot see; the default --out."""
    if args.resume and args.out is None:
        parser.error("--resume needs --out: the folder of the run to continue")
    if args.command != "all" and (ignored := _ignored(EXPERIMENTS[args.command], args)):
        parser.error(
            f"{ignored}: not for the {args.command}, which has no validation split (no loss "
            "to select an epoch or stop on)"
        )
    for settings in (TrainingConfig, *(e.options for e in _experiments(args))):
        for name in dtype_options(settings):
            value = getattr(args, name, None)
            if value is not None and (problem := dtype_problem(value, args.dtype)):
                parser.error(f"argument --{name}: {value!r} {problem} (--dtype {args.dtype})")
    if args.out is None:
        args.out = Path("runs") / f"{args.command}-{datetime.now():%Y%m%d-%H%M%S}"


def _experiments(args: argparse.Namespace) -> list[Experiment]:
    return list(EXPERIMENTS.values()) if args.command == "all" else [EXPERIMENTS[args.command]]


def _folders(args: argparse.Namespace) -> dict[str, Path]:
    """Each experiment the command runs, and its output folder."""
    return {
        e.name: args.out / e.name if args.command == "all" else args.out for e in _experiments(args)
    }


def _ignored(e: Experiment, args: argparse.Namespace) -> str:
    """The options given (and not off) that experiment ``e`` has no use for: those that
    need a validation split, when it has none. "" if none."""
    needing = [] if e.validated else TrainingConfig.VALIDATED
    return ", ".join(f"--{name.replace('_', '-')}" for name in needing if getattr(args, name, 0))


def _settings(e: Experiment, args: argparse.Namespace) -> Settings:
    """The typed settings of one experiment's run: the one place a Namespace is read.
    Under `all`, options that ``e`` ignores are left out, and each is a warning, as is a
    warm-up as long as the training."""
    training, options = e.recipes[args.recipe]
    chosen = given(args, TrainingConfig)
    if ignored := _ignored(e, args):  # `all`; the other commands refuse them
        note(f"warning: the {e.name} has no validation split: {ignored} not applied to it")
        chosen = {k: v for k, v in chosen.items() if k not in TrainingConfig.VALIDATED}
    training = replace(training, **chosen)
    if "updates" in chosen and "epochs" not in chosen:
        training.epochs = None  # the length in updates, as asked, not the recipe's epochs
    if set(TrainingConfig.VALIDATED) & set(chosen) and "min_validation" not in chosen:
        training.min_validation = 0  # selection as asked, however small the split
    if args.quick and "epochs" not in args:
        training.epochs = QUICK_EPOCHS
    if {"warmup", "epochs"} & set(chosen) and (problem := training.warmup_problem()):
        note(f"warning: {e.name}: {problem}")
    data = args.data / e.data_file if args.data and is_folder(args.data) else args.data
    common = {**given(args, Common), "out": _folders(args)[e.name], "data": data}
    options = replace(options, **given(args, e.options))
    return Settings(**common, experiment=e.name, training=training, options=options)


def run_experiment(e: Experiment, settings: Settings, command: str) -> dict:
    """Run one experiment and write its metrics.json and report.md."""
    settings.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        metrics = {"experiment": e.name, **e.run(settings)}
    except BaseException:
        if not any(settings.out.iterdir()):  # nothing written: leave no empty folder
            settings.out.rmdir()
        raise
    metrics.update(seconds=time.perf_counter() - start, resumed=settings.resume)
    apart = ("experiment", "device", "dtype", "seed", "training", "options")  # recorded apart
    common = {k: v for k, v in asdict(settings).items() if k not in apart}
    configuration = {**common, **asdict(settings.training), **asdict(settings.options)}
    metrics["configuration"] = {"command": command, **configuration}
    metrics["recipe"] = {"name": settings.recipe, "description": describe_recipe(settings, e)}
    metrics.update(device=settings.device, dtype=settings.dtype, seed=settings.seed)
    packages = ["tinygrad-ee", "numpy", "h5py", "matplotlib", "tqdm"]
    packages += ["cupy"] if settings.device.startswith("cuda") else []
    metrics["versions"] = {"python": platform.python_version()}
    for package in packages:
        try:
            metrics["versions"][package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            metrics["versions"][package] = "not installed"
    write_json(settings.out / "metrics.json", metrics)
    recipe = f"\n## Recipe\n\n`{metrics['recipe']['description']}`\n"
    if metrics.get("rules"):  # what the size rules set (TrainingConfig.for_data)
        recipe += "\nSet from the data's size:\n\n" + "".join(f"- {r}\n" for r in metrics["rules"])
    write_text(settings.out / "report.md", e.report(metrics) + recipe)
    return metrics


def _run(args: argparse.Namespace) -> int:
    """Run the experiment(s) of the command."""
    get_backend(args.device)  # fail before any work if the device is unavailable
    if args.command == "all" and args.data is not None:
        files = [e.data_file for e in _experiments(args)]
        if not is_folder(args.data):
            raise DataError(f"{args.data}: `all` needs a folder holding {', '.join(files)}")
        if missing := [name for name in files if not (args.data / name).is_file()]:
            raise DataError(f"{args.data}: missing {', '.join(missing)}")
    checkpoint.prepare(args.out, _folders(args).items(), args.resume, args.dtype)
    anomaly = tg.detect_anomaly() if args.detect_anomaly else contextlib.nullcontext()
    lines = []
    runs = [(e, _settings(e, args)) for e in _experiments(args)]  # any warnings first
    with threadpool_limits(limits=args.blas_threads, user_api="blas"), anomaly:
        for e, settings in runs:
            metrics = run_experiment(e, settings, args.command)
            lines.append(f"- [{e.name}]({e.name}/report.md): {e.summary(metrics)}")
    if args.command == "all":
        write_text(args.out / "report.md", "\n".join(["# tinygrad-ee experiments", "", *lines, ""]))
    else:
        print(e.summary(metrics))
    print(f"results in {args.out}/ (report.md, metrics.json, figures, checkpoints)")
    return 0


def _diverged(error: TrainingDiverged) -> str:
    """The message of a divergence: what to try, and where the last good state is."""
    config, saved = error.config, error.checkpoint
    clip = f"a smaller --clip (now {config.clip or 0:g})"
    clip = clip if config.clip else "gradient clipping (e.g. --clip 5)"
    lr = f"a smaller learning rate (e.g. --lr {config.lr / 10:g}, now {config.lr:g})"
    kept = "This run writes no checkpoints."
    if saved is not None and saved.saved is None:
        kept = "No checkpoint was written: it diverged before the end of its first epoch."
    elif saved is not None:
        kept = f"The last good checkpoint ({saved.saved}) is kept in {saved.path}: add --resume "
        kept += "(with the new --lr or --clip) to continue from it."
    return f"{error}; try {clip} or {lr}. {kept}"


def _resume_command(argv: list[str], out: Path) -> str:
    """The command line that continues this one, as it was started: the console script
    or ``python -m`` this package."""
    argv = [*argv, *(["--resume"] if "--resume" not in argv else [])]
    if not any(arg == "--out" or arg.startswith("--out=") for arg in argv):
        argv += ["--out", str(out)]
    script, module = Path(sys.argv[0]).name, [Path(sys.executable).name, "-m", __package__]
    program = [script] if script.startswith("tinygrad-ee") else module
    return shlex.join([*program, *argv])


def _data_command(args: argparse.Namespace) -> int:
    if args.data_command == "export":
        paths = export_defaults(args.out)
    else:  # the builder imports the standard library's parsers: only when asked
        from .data.embedded import SHIPPED_NGRAMS
        from .data.ngrams import shipped_arrays

        paths = [args.out or SHIPPED_NGRAMS]
        write_npz(paths[0], shipped_arrays(), compressed=True)
    for path in paths:
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import train_demo

    result = train_demo(device=args.device, steps=args.steps)
    losses = f"loss {result['first_loss']:.3f} -> {result['last_loss']:.3f}"
    print(f"two-ring MLP on {args.device}: {losses}, accuracy {result['accuracy']:.1%}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command line (``tinygrad-ee``): the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command not in ("demo", "data"):
            _check_usage(parser, args)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    try:
        return {"demo": _demo, "data": _data_command}.get(args.command, _run)(args)
    except (DataError, DeviceError, CheckpointError, TooLarge) as error:
        return _fail(f"error: {error}", EXIT_ERROR)
    except MemoryError as error:  # beyond what TooLarge foresaw: NumPy names the array
        return _fail(f"error: not enough memory: {str(error) or 'MemoryError'}", EXIT_ERROR)
    except TrainingDiverged as error:
        return _fail(f"error: {_diverged(error)}", EXIT_DIVERGED)
    except FloatingPointError as error:  # tg.AnomalyError outside training
        return _fail(f"error: {error}", EXIT_DIVERGED)
    except OSError as error:  # an --out that cannot be written, a full disk, ...
        what = f"{error.filename or ''}: {error.strerror or error}"
        return _fail(f"error: cannot write {what}", EXIT_ERROR)
    except KeyboardInterrupt as interrupt:
        saved = isinstance(interrupt, TrainingInterrupted) and interrupt.path is not None
        text = f"interrupted: {interrupt}" if str(interrupt) else "interrupted"
        folders = [] if args.command in ("demo", "data") else _folders(args).values()
        if saved or any(any((f / checkpoint.FOLDER).glob("*.npz")) for f in folders):
            where = "" if saved else f"the last checkpoints are in {args.out}; "
            text += f"\n{where}to continue: {_resume_command(argv, args.out)}"
        return _fail(text, EXIT_INTERRUPTED)


def _fail(message: str, status: int) -> int:
    print(message, file=sys.stderr)
    return status
