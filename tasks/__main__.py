"""Train, evaluate and report the experiments of SPEC.md.

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
    from datetime import datetime
    from importlib import metadata
    from pathlib import Path

    from threadpoolctl import threadpool_limits

    import tinygrad_ee as tg
    from tinygrad_ee import DeviceError, get_backend

    from . import activity, autoencoder, language_model
    from .checkpoint import CheckpointError, read_training_checkpoint
    from .data import DataError, is_folder
    from .files import write_json, write_text
    from .memory import TooLarge
    from .options import (
        dtype_problem,
        momentum,
        non_negative,
        positive,
        positive_int,
        seed,
    )
    from .training import (
        CHECKPOINT_FOLDER,
        TrainingConfig,
        TrainingDiverged,
        TrainingInterrupted,
        describe_position,
    )
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(EXIT_INTERRUPTED)

EXPERIMENTS = {
    autoencoder.NAME: (autoencoder, "data1.h5"),
    language_model.NAME: (language_model, "data2.h5"),
    activity.NAME: (activity, "data3.h5"),
}
QUICK_EPOCHS = 2
# Number options whose values enter the computation in the run's dtype.
DTYPE_OPTIONS = ("lr", "momentum", "clip", "lam", "beta", "rho")

EPILOG = f"""\
checkpoints and --resume:
  Each training run writes OUT/{CHECKPOINT_FOLDER}/<run>.npz (with `all`: in each
  experiment's folder) atomically at the end of every epoch: parameters, momentum
  buffers, epoch, random-generator states, the losses so far (early stopping included)
  and the settings that define the run. The same command again with --resume (same --out)
  continues where it stopped: runs that had finished are not trained again, the
  unfinished one continues from its checkpoint and ends with the parameters an
  uninterrupted run would have (bit for bit on the CPU). --epochs, --lr, --momentum,
  --clip and --device may change on resume; a checkpoint whose other settings differ is
  refused, naming them. --resume with no checkpoint in --out starts afresh, and says so.
  Without --resume, an --out holding an unfinished run's checkpoint is refused (continue
  it with --resume, or remove its {CHECKPOINT_FOLDER}/ folder); finished runs' checkpoints
  are replaced. Ctrl-C finishes the current batch, saves, and exits; a second Ctrl-C
  stops at once (the last epoch's checkpoint stays).

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


def _add_common(parser: argparse.ArgumentParser, defaults: dict | None) -> None:
    def default(name: str) -> str:
        return "the experiment's" if defaults is None else str(defaults[name])

    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument(
        "--data",
        type=Path,
        help="an HDF5 file in the experiment's layout, or a folder holding data1.h5, "
        "data2.h5, data3.h5 (for `all`: such a folder) (default: the embedded data)",
    )
    parser.add_argument(
        "--epochs", type=positive_int, help=f"training epochs (default: {default('epochs')})"
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        help=f"mini-batch size (default: {default('batch_size')})",
    )
    shared = " (with `all`: for every experiment)" if defaults is None else ""
    parser.add_argument(
        "--lr", type=positive(float), help=f"learning rate (default: {default('lr')}){shared}"
    )
    parser.add_argument(
        "--momentum",
        type=momentum,
        help=f"momentum, in [0, 1) (default: {default('momentum')}){shared}",
    )
    clip = "the experiment's: 5 for activity, where vanilla RNNs explode without it, else none"
    if defaults is not None:
        clip = f"{defaults['clip']:g}" if defaults["clip"] else "none"
    parser.add_argument(
        "--clip",
        type=non_negative(float),
        help=f"max global gradient norm, 0 for none (default: {clip}){shared}",
    )
    parser.add_argument(
        "--dtype", choices=["float32", "float64"], default="float32", help="(default: float32)"
    )
    parser.add_argument(
        "--seed",
        type=seed,
        default=0,
        help="random seed, 0 to 2**64 - 1: initialisation, batch order, and which embedded "
        "patches and activity series are made (default: 0)",
    )
    parser.add_argument(
        "--out", type=Path, help="output folder (default: runs/<experiment>-<timestamp>)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_EPOCHS} epochs on a subset of the data: a smoke run in seconds",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run stopped in --out (needed) from its checkpoints; see below",
    )
    parser.add_argument(
        "--detect-anomaly",
        action="store_true",
        help="stop at the first op that makes a NaN or infinity, forward or backward, "
        "naming it (slower: every op's result is checked)",
    )
    parser.add_argument(
        "--no-compile",
        action="store_true",
        help="train with eager steps (op by op) instead of compiled ones (traced once, then "
        "replayed; the default): for debugging, or to compare",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")
    parser.add_argument(
        "--blas-threads",
        type=positive_int,
        default=1,
        help="threads for NumPy's BLAS (default: 1; these models' matrices are small, and "
        "more threads than free cores make every product many times slower)",
    )


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="python -m tasks", description=__doc__, epilog=EPILOG, formatter_class=raw
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, _) in EXPERIMENTS.items():
        sub = commands.add_parser(
            name,
            help=module.__doc__.splitlines()[0],
            description=module.__doc__,
            epilog=EPILOG,
            formatter_class=raw,
        )
        _add_common(sub, module.DEFAULTS)
        module.add_arguments(sub)
    everything = commands.add_parser(
        "all",
        help="the three experiments, one report linking them",
        description="The three experiments, in OUT/autoencoder, OUT/language-model and "
        "OUT/activity, and a report.md linking them.",
        epilog=EPILOG,
        formatter_class=raw,
    )
    _add_common(everything, None)
    for module, _ in EXPERIMENTS.values():
        module.add_arguments(everything)
    data = commands.add_parser("data", help="the embedded default data")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    export = data_commands.add_parser("export", help="write data1.h5, data2.h5, data3.h5")
    export.add_argument("--out", type=Path, required=True, help="folder to write to")
    demo = commands.add_parser("demo", help="train a tiny MLP on two rings with the engine alone")
    demo.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    demo.add_argument("--steps", type=int, default=300, help="gradient steps (default: 300)")
    return parser


def _versions(device: str) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ["tinygrad-ee", "numpy", "h5py", "matplotlib", "tqdm"] + (
        ["cupy"] if device.startswith("cuda") else []
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _data_file(data: Path | None, file_name: str) -> Path | None:
    if data is None:
        return None
    if is_folder(data):
        return data / file_name
    return data


def _check_data_folder(data: Path | None) -> None:
    """For `all`: a folder holding the three files, checked before anything trains."""
    if data is None:
        return
    if not is_folder(data):
        raise DataError(f"{data}: `all` needs a folder holding data1.h5, data2.h5, data3.h5")
    missing = [name for _, name in EXPERIMENTS.values() if not (data / name).is_file()]
    if missing:
        raise DataError(f"{data}: missing {', '.join(missing)}")


def _checkpoint_folders(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """(experiment, its output folder) for each experiment the command runs."""
    if args.command == "all":
        return [(name, args.out / name) for name in EXPERIMENTS]
    return [(args.command, args.out)]


def _check_checkpoints(args: argparse.Namespace) -> None:
    """Before anything trains: without --resume, an unfinished run's checkpoint is never
    overwritten (finished runs' ones are removed); with --resume and none, say so.
    Leftover temporary files of a write that was killed are removed either way."""
    found, unfinished = [], []
    for experiment, folder in _checkpoint_folders(args):
        folder = folder / CHECKPOINT_FOLDER
        if not folder.is_dir():
            continue
        _check_inside_out(folder, args.out)
        for leftover in folder.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)
        for path in sorted(folder.glob("*.npz")):
            try:
                meta, _, _ = read_training_checkpoint(path, args.dtype)
            except CheckpointError as error:
                raise CheckpointError(
                    f"{error}. It cannot be resumed: remove it (or all of {folder}/, or choose "
                    "another --out) to train that run afresh"
                ) from None
            if meta["identity"].get("experiment") == experiment:
                found.append(path)
            if not meta["done"]:
                where = describe_position(meta["epoch"], meta["batch"])
                unfinished.append(f"{path} ({where})")
    if args.resume:
        if not found:
            print(
                f"--resume: no training checkpoint of this command in {args.out}: starting afresh",
                file=sys.stderr,
            )
        return
    if unfinished:
        raise CheckpointError(
            f"{args.out} holds the checkpoint of an unfinished run: {', '.join(unfinished)}. "
            "Continue it with --resume, or remove "
            f"{args.out / CHECKPOINT_FOLDER}/ (or choose another --out) to start afresh"
        )
    for path in found:
        path.unlink()


def _check_inside_out(folder: Path, out: Path) -> None:
    """Files are deleted only inside --out: a checkpoint folder that is a link leading
    elsewhere is refused before anything in it is touched."""
    real, root = folder.resolve(), out.resolve()
    if not real.is_relative_to(root):
        raise CheckpointError(
            f"{folder} leads to {real}, outside --out ({root}): nothing there is read, "
            "written or deleted. Replace the link by a folder, or choose another --out"
        )


def _check_options_fit_dtype(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A usage error for a number option that the run's dtype rounds to 0 or to inf."""
    for name in DTYPE_OPTIONS:
        value = getattr(args, name, None)
        problem = None if value is None else dtype_problem(value, args.dtype)
        if problem:
            parser.error(f"argument --{name}: {value!r} {problem} (--dtype {args.dtype})")


def run_experiment(name: str, args: argparse.Namespace, out: Path) -> dict:
    module, file_name = EXPERIMENTS[name]
    defaults = module.DEFAULTS
    clip = args.clip if args.clip is not None else defaults["clip"]
    config = TrainingConfig(
        epochs=args.epochs or (QUICK_EPOCHS if args.quick else defaults["epochs"]),
        batch_size=args.batch_size or defaults["batch_size"],
        lr=args.lr if args.lr is not None else defaults["lr"],
        momentum=args.momentum if args.momentum is not None else defaults["momentum"],
        clip=clip or None,
        progress=not args.no_progress,
        compile=not args.no_compile,
    )
    experiment_args = argparse.Namespace(**vars(args))
    experiment_args.data = _data_file(args.data, file_name)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        metrics = module.run(experiment_args, config, out)
    except BaseException:
        if not any(out.iterdir()):  # nothing written: leave no empty folder behind
            out.rmdir()
        raise
    metrics["seconds"] = time.perf_counter() - start
    own = {"command", "device", "data", "dtype", "seed", "quick", "blas_threads", *module.OPTIONS}
    metrics["configuration"] = {
        **{
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(experiment_args).items()
            if k in own
        },
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "momentum": config.momentum,
        "clip": config.clip,
        "compiled_steps": config.compile,
    }
    metrics["resumed"] = bool(args.resume)
    metrics["device"] = args.device
    metrics["dtype"] = args.dtype
    metrics["seed"] = args.seed
    metrics["versions"] = _versions(args.device)
    write_json(out / "metrics.json", metrics)
    write_text(out / "report.md", module.report(metrics))
    return metrics


def _resume_command(argv: list[str], out: Path) -> str:
    """The command line that continues this one."""
    argv = list(argv)
    if not any(arg == "--out" or arg.startswith("--out=") for arg in argv):
        argv += ["--out", str(out)]
    if "--resume" not in argv:
        argv.append("--resume")
    return shlex.join([Path(sys.executable).name, "-m", "tasks", *argv])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "resume", False) and args.out is None:
        parser.error("--resume needs --out: the folder of the run to continue")
    if hasattr(args, "dtype"):
        _check_options_fit_dtype(parser, args)
    if args.command not in ("demo", "data") and args.out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        args.out = Path("runs") / f"{args.command}-{stamp}"
    try:
        if args.command == "demo":
            from .demo import train_demo

            result = train_demo(device=args.device, steps=args.steps)
            print(
                f"two-ring MLP on {args.device}: loss {result['first_loss']:.3f} -> "
                f"{result['last_loss']:.3f}, accuracy {result['accuracy']:.1%}"
            )
            return 0
        if args.command == "data":
            from .default_data import export_defaults

            for path in export_defaults(args.out):
                print(f"wrote {path}")
            return 0
        get_backend(args.device)  # fail before any work if the device is unavailable
        if args.command == "all":
            _check_data_folder(args.data)
        _check_checkpoints(args)
        anomaly = tg.detect_anomaly() if args.detect_anomaly else contextlib.nullcontext()
        with threadpool_limits(limits=args.blas_threads, user_api="blas"), anomaly:
            return _run(args)
    except (DataError, DeviceError, CheckpointError, TooLarge) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except MemoryError as error:  # beyond what TooLarge foresaw: NumPy names the array
        print(f"error: not enough memory: {str(error) or 'MemoryError'}", file=sys.stderr)
        return EXIT_ERROR
    except (TrainingDiverged, FloatingPointError) as error:  # tg.AnomalyError is the latter
        print(f"error: {error}", file=sys.stderr)
        return EXIT_DIVERGED
    except OSError as error:  # an --out that cannot be written, a full disk, ...
        print(
            f"error: cannot write {error.filename or ''}: {error.strerror or error}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except TrainingInterrupted as interrupt:
        print(f"interrupted: {interrupt}", file=sys.stderr)
        if interrupt.path is not None:
            print(f"to continue: {_resume_command(argv, args.out)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        if args.command not in ("demo", "data") and any(
            any((folder / CHECKPOINT_FOLDER).glob("*.npz"))
            for _, folder in _checkpoint_folders(args)
        ):
            print(
                f"the last checkpoints are in {args.out}; to continue: "
                f"{_resume_command(argv, args.out)}",
                file=sys.stderr,
            )
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    out = args.out
    if args.command == "all":
        sections = []
        for name in EXPERIMENTS:
            metrics = run_experiment(name, args, out / name)
            sections.append(f"- [{name}]({name}/report.md): {_summary(metrics)}")
        write_text(out / "report.md", "# tinygrad-ee experiments\n\n" + "\n".join(sections) + "\n")
    else:
        metrics = run_experiment(args.command, args, out)
        print(_summary(metrics))
    print(f"results in {out}/ (report.md, metrics.json, figures, checkpoints)")
    return 0


def _summary(metrics: dict) -> str:
    seconds = f"{metrics['seconds']:.0f} s"
    if metrics["experiment"] == autoencoder.NAME:
        return f"autoencoder final loss J {metrics['final_loss']:.4f} ({seconds})"
    if metrics["experiment"] == language_model.NAME:
        parts = [
            f"{r['label']}: test CE {r['test_cross_entropy']:.3f}, "
            f"accuracy {r['test_accuracy']:.1%}"
            for r in metrics["configurations"]
        ]
        return "language model " + "; ".join(parts) + f" ({seconds})"
    parts = [
        f"{r['cell'].upper()} test accuracy {r['test_accuracy']:.1%}" for r in metrics["cells"]
    ]
    return "activity " + ", ".join(parts) + f" ({seconds})"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # before main's own handler: while parsing the command line
        print("interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
