"""Train, evaluate and report the experiments of SPEC.md.

    python -m tasks all                       # the three experiments on the embedded data
    python -m tasks autoencoder --quick       # a smoke run in seconds
    python -m tasks activity --cell gru --device cuda --data data3.h5
    python -m tasks data export --out DIR     # the embedded data as data1/2/3.h5

Each run writes metrics.json, PNG figures, .npz checkpoints and report.md to --out
(default runs/<experiment>-<timestamp>).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import datetime
from importlib import metadata
from pathlib import Path

from threadpoolctl import threadpool_limits

from tinygrad_ee import DeviceError, get_backend

from . import activity, autoencoder, language_model
from .checkpoint import CheckpointError
from .data import DataError
from .files import write_json, write_text
from .options import non_negative, positive_int
from .training import TrainingConfig

EXPERIMENTS = {
    autoencoder.NAME: (autoencoder, "data1.h5"),
    language_model.NAME: (language_model, "data2.h5"),
    activity.NAME: (activity, "data3.h5"),
}
QUICK_EPOCHS = 2


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
        "--lr", type=non_negative(float), help=f"learning rate (default: {default('lr')}){shared}"
    )
    parser.add_argument(
        "--momentum",
        type=non_negative(float),
        help=f"momentum (default: {default('momentum')}){shared}",
    )
    parser.add_argument(
        "--dtype", choices=["float32", "float64"], default="float32", help="(default: float32)"
    )
    parser.add_argument(
        "--seed",
        type=non_negative(int),
        default=0,
        help="random seed: initialisation, batch order, and which embedded patches and "
        "activity series are made (default: 0)",
    )
    parser.add_argument(
        "--out", type=Path, help="output folder (default: runs/<experiment>-<timestamp>)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_EPOCHS} epochs on a subset of the data: a smoke run in seconds",
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
    parser = argparse.ArgumentParser(
        prog="python -m tasks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, _) in EXPERIMENTS.items():
        sub = commands.add_parser(name, help=module.__doc__.splitlines()[0])
        _add_common(sub, module.DEFAULTS)
        module.add_arguments(sub)
    everything = commands.add_parser("all", help="the three experiments, one report linking them")
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
    if data.is_dir():
        return data / file_name
    return data


def _check_data_folder(data: Path | None) -> None:
    """For `all`: a folder holding the three files, checked before anything trains."""
    if data is None:
        return
    if not data.is_dir():
        raise DataError(f"{data}: `all` needs a folder holding data1.h5, data2.h5, data3.h5")
    missing = [name for _, name in EXPERIMENTS.values() if not (data / name).is_file()]
    if missing:
        raise DataError(f"{data}: missing {', '.join(missing)}")


def run_experiment(name: str, args: argparse.Namespace, out: Path) -> dict:
    module, file_name = EXPERIMENTS[name]
    defaults = module.DEFAULTS
    config = TrainingConfig(
        epochs=args.epochs or (QUICK_EPOCHS if args.quick else defaults["epochs"]),
        batch_size=args.batch_size or defaults["batch_size"],
        lr=args.lr if args.lr is not None else defaults["lr"],
        momentum=args.momentum if args.momentum is not None else defaults["momentum"],
        progress=not args.no_progress,
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
    }
    metrics["device"] = args.device
    metrics["dtype"] = args.dtype
    metrics["seed"] = args.seed
    metrics["versions"] = _versions(args.device)
    write_json(out / "metrics.json", metrics)
    write_text(out / "report.md", module.report(metrics))
    return metrics


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
        with threadpool_limits(limits=args.blas_threads, user_api="blas"):
            return _run(args)
    except (DataError, DeviceError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # an --out that cannot be written, a full disk, ...
        print(
            f"error: cannot write {error.filename or ''}: {error.strerror or error}",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or Path("runs") / f"{args.command}-{stamp}"
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
    sys.exit(main())
