"""Train, evaluate and report the experiments described in docs/experiments.md.

    python -m tasks all                       # the three experiments on the embedded data
    python -m tasks autoencoder --quick       # a smoke run in seconds
    python -m tasks activity --cell gru --device cuda --data data3.h5
    python -m tasks data export --out DIR     # the embedded data as data1/2/3.h5
    python -m tasks activity --out runs/a --resume   # continue a stopped run

Each run writes metrics.json, PNG figures, .npz checkpoints and report.md to --out
(default runs/<experiment>-<timestamp>), and a training checkpoint per training run
to <out>/resume/ at the end of every epoch.
"""

from __future__ import annotations

import sys

EXIT_ERROR, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 130

try:  # Ctrl-C while the libraries load (a quarter second): no traceback, as later on
    import argparse
    import contextlib
    import platform
    import shlex
    import time
    from dataclasses import asdict, fields, replace
    from datetime import datetime
    from importlib import metadata
    from pathlib import Path

    from threadpoolctl import threadpool_limits

    import tinygrad_ee as tg
    from data import DataError, is_folder
    from tinygrad_ee import DeviceError, get_backend

    from . import activity, autoencoder, checkpoint, language_model
    from .checkpoint import CheckpointError
    from .experiment import QUICK_EPOCHS, Common, Experiment, Settings
    from .files import export_defaults, write_json, write_npz, write_text
    from .memory import TooLarge
    from .options import add_arguments, dtype_options, dtype_problem, given
    from .training import TrainingConfig, TrainingDiverged, TrainingInterrupted
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(EXIT_INTERRUPTED)

EXPERIMENTS = {
    e.name: e for e in (autoencoder.EXPERIMENT, language_model.EXPERIMENT, activity.EXPERIMENT)
}

EPILOG = f"""\
checkpoints and --resume:
  Each training run writes OUT/{checkpoint.FOLDER}/<run>.npz (with `all`: in each
  experiment's folder) atomically at the end of every epoch. The same command again with
  --resume (same --out) continues where it stopped: finished runs are not trained again,
  the unfinished one ends with the parameters an uninterrupted run would have (bit for
  bit on the CPU). --epochs, --lr, --momentum, --clip and --device may change on resume;
  a checkpoint whose other settings differ is refused, naming them. Without --resume, an
  --out holding an unfinished run is refused. Ctrl-C finishes the current batch, saves
  and exits; a second Ctrl-C stops at once (the last epoch's checkpoint stays).

exit status:
  0    success
  {EXIT_ERROR}    usage error (an option out of range, or that --dtype rounds to 0 or inf);
       sizes too large for the device's memory; a missing, unreadable or invalid data or
       checkpoint file, or data too small for the experiment; an unavailable device; an
       --out that cannot be written, or that holds an unfinished run's checkpoint
       (without --resume) or a checkpoint folder linking outside it
  {EXIT_DIVERGED}    training diverged: a batch loss or the validation loss became NaN or
       infinite (or, with --detect-anomaly, an op made a NaN or infinity); the last good
       checkpoint is kept
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C); the training state is saved: rerun with --resume
"""


def build_parser() -> argparse.ArgumentParser:
    raw = {"epilog": EPILOG, "formatter_class": argparse.RawDescriptionHelpFormatter}
    parser = argparse.ArgumentParser(prog="python -m tasks", description=__doc__, **raw)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for e in EXPERIMENTS.values():
        sub = commands.add_parser(
            e.name, help=e.description.splitlines()[0], description=e.description, **raw
        )
        add_arguments(sub, Common)
        sub.set_defaults(**asdict(Common()))  # the command line reads these itself
        add_arguments(sub, e.training)
        add_arguments(sub.add_argument_group(e.name), e.options)
    everything = commands.add_parser(
        "all",
        help="the three experiments, one report linking them",
        description="The three experiments, each in its folder of OUT, and a report.md "
        "linking them. Training options apply to every experiment.",
        **raw,
    )
    add_arguments(everything, Common)
    everything.set_defaults(**asdict(Common()))
    add_arguments(everything, TrainingConfig, shared=True)
    for e in EXPERIMENTS.values():
        add_arguments(everything.add_argument_group(e.name), e.options)
    data = commands.add_parser("data", help="the embedded default data").add_subparsers(
        dest="data_command", required=True
    )
    export = data.add_parser("export", help="write data1.h5, data2.h5, data3.h5")
    export.add_argument("--out", type=Path, required=True, help="folder to write to")
    rebuild = data.add_parser(
        "rebuild-ngrams", help="rebuild the shipped 4-grams from this Python's prose"
    )
    rebuild.add_argument("--out", type=Path, help="(default: the shipped file)")
    demo = commands.add_parser("demo", help="train a tiny MLP on two rings with the engine alone")
    demo.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    demo.add_argument("--steps", type=int, default=300, help="gradient steps (default: 300)")
    return parser


def _check_usage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors argparse cannot see; the default --out."""
    if args.resume and args.out is None:
        parser.error("--resume needs --out: the folder of the run to continue")
    for e in _experiments(args):
        for name in dtype_options(TrainingConfig) + dtype_options(e.options):
            value = getattr(args, name, None)
            if value is not None and (problem := dtype_problem(value, args.dtype)):
                parser.error(f"argument --{name}: {value!r} {problem} (--dtype {args.dtype})")
    if args.out is None:
        args.out = Path("runs") / f"{args.command}-{datetime.now():%Y%m%d-%H%M%S}"


def _experiments(args: argparse.Namespace) -> list[Experiment]:
    return list(EXPERIMENTS.values()) if args.command == "all" else [EXPERIMENTS[args.command]]


def _folders(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """(experiment, its output folder) for each experiment the command runs."""
    if args.command == "all":
        return [(name, args.out / name) for name in EXPERIMENTS]
    return [(args.command, args.out)]


def _settings(e: Experiment, args: argparse.Namespace, out: Path) -> Settings:
    """The typed settings of one experiment's run."""
    training = replace(e.training, **given(args, TrainingConfig))
    if args.quick and "epochs" not in args:
        training.epochs = QUICK_EPOCHS
    data = args.data / e.data_file if args.data is not None and is_folder(args.data) else args.data
    common = {item.name: getattr(args, item.name) for item in fields(Common)}
    return Settings(
        **{**common, "out": out, "data": data},
        training=training,
        options=e.options(**given(args, e.options)),
    )


def run_experiment(e: Experiment, settings: Settings, command: str) -> dict:
    """Run one experiment and write its metrics.json and report.md."""
    settings.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        metrics = e.run(settings)
    except BaseException:
        if not any(settings.out.iterdir()):  # nothing written: leave no empty folder
            settings.out.rmdir()
        raise
    metrics["seconds"] = time.perf_counter() - start
    configuration = {
        key: value
        for key, value in asdict(settings).items()
        if key not in ("device", "dtype", "seed", "training", "options")
    }
    metrics["configuration"] = {
        "command": command,
        **configuration,
        **asdict(settings.training),
        **asdict(settings.options),
    }
    metrics.update(
        resumed=settings.resume, device=settings.device, dtype=settings.dtype, seed=settings.seed
    )
    packages = ["tinygrad-ee", "numpy", "h5py", "matplotlib", "tqdm"]
    packages += ["cupy"] if settings.device.startswith("cuda") else []
    metrics["versions"] = {
        "python": platform.python_version(),
        **{p: _version(p) for p in packages},
    }
    write_json(settings.out / "metrics.json", metrics)
    write_text(settings.out / "report.md", e.report(metrics))
    return metrics


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _run(args: argparse.Namespace) -> int:
    """Run the experiment(s) of the command."""
    get_backend(args.device)  # fail before any work if the device is unavailable
    if args.command == "all" and args.data is not None:
        if not is_folder(args.data):
            raise DataError(
                f"{args.data}: `all` needs a folder holding data1.h5, data2.h5, data3.h5"
            )
        missing = [
            e.data_file for e in EXPERIMENTS.values() if not (args.data / e.data_file).is_file()
        ]
        if missing:
            raise DataError(f"{args.data}: missing {', '.join(missing)}")
    checkpoint.prepare(args.out, _folders(args), args.resume, args.dtype)
    anomaly = tg.detect_anomaly() if args.detect_anomaly else contextlib.nullcontext()
    sections = []
    with threadpool_limits(limits=args.blas_threads, user_api="blas"), anomaly:
        for name, folder in _folders(args):
            e = EXPERIMENTS[name]
            metrics = run_experiment(e, _settings(e, args, folder), args.command)
            sections.append(f"- [{name}]({name}/report.md): {e.summary(metrics)}")
    if args.command == "all":
        write_text(
            args.out / "report.md", "# tinygrad-ee experiments\n\n" + "\n".join(sections) + "\n"
        )
    else:
        print(e.summary(metrics))
    print(f"results in {args.out}/ (report.md, metrics.json, figures, checkpoints)")
    return 0


def _diverged(error: TrainingDiverged) -> str:
    """The message of a divergence: what to try, and where the last good state is."""
    config, saved = error.config, error.checkpoint
    clip = (
        f"a smaller --clip (now {config.clip:g})"
        if config.clip
        else "gradient clipping (e.g. --clip 5)"
    )
    lr = f"a smaller learning rate (e.g. --lr {config.lr / 10:g}, now {config.lr:g})"
    if saved is None:
        kept = "This run writes no checkpoints."
    elif saved.saved is None:
        kept = "No checkpoint was written: it diverged before the end of its first epoch."
    else:
        kept = (
            f"The last good checkpoint ({saved.saved}) is kept in {saved.path}: add --resume "
            "(with the new --lr or --clip) to continue from it."
        )
    return f"{error}; try {clip} or {lr}. {kept}"


def _resume_command(argv: list[str], out: Path) -> str:
    """The command line that continues this one."""
    argv = list(argv)
    if not any(arg == "--out" or arg.startswith("--out=") for arg in argv):
        argv += ["--out", str(out)]
    return shlex.join(
        [
            Path(sys.executable).name,
            "-m",
            "tasks",
            *argv,
            *(["--resume"] if "--resume" not in argv else []),
        ]
    )


def _data_command(args: argparse.Namespace) -> int:
    if args.data_command == "export":
        paths = export_defaults(args.out)
    else:
        from data.embedded import SHIPPED_NGRAMS
        from data.ngrams import shipped_arrays

        paths = [args.out or SHIPPED_NGRAMS]
        write_npz(paths[0], shipped_arrays(), compressed=True)
    for path in paths:
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in EXPERIMENTS or args.command == "all":
        _check_usage(parser, args)
    try:
        if args.command == "demo":
            from .demo import train_demo

            result = train_demo(device=args.device, steps=args.steps)
            losses = f"loss {result['first_loss']:.3f} -> {result['last_loss']:.3f}"
            print(f"two-ring MLP on {args.device}: {losses}, accuracy {result['accuracy']:.1%}")
            return 0
        return _data_command(args) if args.command == "data" else _run(args)
    except (DataError, DeviceError, CheckpointError, TooLarge) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except MemoryError as error:  # beyond what TooLarge foresaw: NumPy names the array
        print(f"error: not enough memory: {str(error) or 'MemoryError'}", file=sys.stderr)
        return EXIT_ERROR
    except TrainingDiverged as error:
        print(f"error: {_diverged(error)}", file=sys.stderr)
        return EXIT_DIVERGED
    except FloatingPointError as error:  # tg.AnomalyError outside training
        print(f"error: {error}", file=sys.stderr)
        return EXIT_DIVERGED
    except OSError as error:  # an --out that cannot be written, a full disk, ...
        print(
            f"error: cannot write {error.filename or ''}: {error.strerror or error}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except KeyboardInterrupt as interrupt:
        print(f"interrupted: {interrupt}" if str(interrupt) else "interrupted", file=sys.stderr)
        saved = isinstance(interrupt, TrainingInterrupted) and interrupt.path is not None
        if saved or (
            args.command not in ("demo", "data")
            and checkpoint.any_saved(f for _, f in _folders(args))
        ):
            where = "" if saved else f"the last checkpoints are in {args.out}; "
            print(f"{where}to continue: {_resume_command(argv, args.out)}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # before main's own handler: while parsing the command line
        print("interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
