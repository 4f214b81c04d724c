"""Every benchmark in one run: models against references, LSTM scaling, per-op overhead.

    python -m benchmarks [--device cpu --device cuda] [--dtype float32 --dtype float64]
                         [--quick] [--json PATH] [--markdown PATH]

For each available device and dtype, and each model at the experiments' sizes (see
`benchmarks.models.model_specs`): the wall time of one training step (forward,
backward, SGD-momentum update) and of one inference pass (forward under
``tinygrad_ee.no_grad()``), as median, min and max over the repeats after warm-up
(as many as fit in a time budget for the engine; each reference then makes as many).
Beside it, in the same run, the references and the ratios engine / reference (< 1:
the engine is faster): the hand-derived NumPy step (`benchmarks.reference`, CPU only)
and, when PyTorch is installed, torch eager from elementary ops and (recurrent models)
torch.nn (`benchmarks.torch_reference`). Then the LSTM classifier's step time and
memory against T and batch (`benchmarks.scaling`, plotted to ``scaling.png``), and
the engine's per-op overhead (`benchmarks.op_overhead`).

Devices that cannot be used here (no CuPy, no GPU) are listed as skipped with the
reason. The markdown report is printed, and written with ``--markdown``; ``--json``
writes every figure. Exit status: 0 on success, 2 for bad arguments, 1 when an output
file cannot be written.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import importlib
import importlib.util
import json
import os
import platform
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import tinygrad_ee as tg

from . import models, op_overhead, report, scaling, torch_reference
from .timing import (
    Plan,
    Timing,
    cuda_index,
    measure_interleaved,
    no_sync,
    positive_int,
    synchronizer,
)

DTYPES = ("float32", "float64")
DEFAULT_DEVICES = ("cpu", "cuda")
DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?")
HAND_CPU_ONLY = "the hand-derived NumPy reference runs on the CPU only"
NO_TORCH_OPTION = "left out (--no-torch)"
NO_NN_VARIANT = "only the recurrent models have a torch.nn counterpart (RNN, LSTM, GRU)"
# Quick mode: tiny recurrent models and sweeps, one or two repeats: a smoke run of
# every code path in a few seconds. Its figures mean nothing.
QUICK_RECURRENT = {"steps": 8, "batch": 4, "hidden": 16}
QUICK_OP_REPEAT = 5
OP_REPEAT = 2000
# Timed calls per model measurement: as many as fit in 2.5 s, 5 to 100. A full run on
# one device (both dtypes, 5 models, up to 4 sides) takes about 4 minutes on 2 cores.
MODEL_PLAN = Plan(warmup=2, min_repeats=5, max_repeats=100, budget_s=2.5)


def device_argument(text: str) -> str:
    """argparse type for --device: "cpu", "cuda" or "cuda:N" (whether it is *available*
    is checked later: an unavailable device is skipped, an unknown one is an error)."""
    if not DEVICE_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"unknown device {text!r}: expected 'cpu', 'cuda' or 'cuda:N'"
        )
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit status: 0 done (unavailable devices are skipped, not errors), 1 an "
        "output file cannot be written, 2 bad arguments.",
    )
    parser.add_argument(
        "--device",
        action="append",
        type=device_argument,
        help="cpu, cuda or cuda:N; repeat for several (default: cpu and cuda; "
        "unavailable devices are reported as skipped)",
    )
    parser.add_argument(
        "--dtype",
        action="append",
        choices=DTYPES,
        help="repeat for several (default: float32 and float64)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny recurrent models and sweeps, few repeats: checks that everything runs",
    )
    parser.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help="write every figure here, and the scaling plot to scaling.png next to it",
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        metavar="PATH",
        help="write the report here (and the plot next to it when there is no --json)",
    )
    parser.add_argument(
        "--repeat",
        type=positive_int,
        help="timed calls per measurement (default: as many as fit in 2.5 s, at least 5 and "
        "at most 100; scaling sweeps: in 3 s, 3 to 10)",
    )
    parser.add_argument(
        "--scaling-dtype",
        choices=DTYPES,
        default="float64",
        help="dtype of the LSTM scaling sweeps (default float64: in float32 the gradients "
        "of an untrained LSTM decay into subnormal numbers over a few hundred steps, whose "
        "arithmetic is many times slower on x86 CPUs and would hide the scaling)",
    )
    parser.add_argument(
        "--no-torch",
        action="store_true",
        help="leave out the PyTorch references even where torch is installed (importing "
        "torch takes seconds)",
    )
    parser.add_argument(
        "--blas-threads",
        type=positive_int,
        default=1,
        help="BLAS threads, and torch's threads (default 1: these products are small, and "
        "threads that must share busy cores make each one many times slower)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks as the module docstring says; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    outputs = [path for path in (args.json, args.markdown) if path is not None]
    if len(outputs) == 2 and args.json.resolve() == args.markdown.resolve():
        parser.error("--json and --markdown name the same file")
    for path in outputs:
        if path.exists() and path.is_dir():
            parser.error(f"{path} is a folder, expected a file path")
    plot_path = outputs[0].parent / "scaling.png" if outputs else None
    try:  # before the run, which takes minutes: an output that cannot be written fails now
        for path in [*outputs, plot_path] if outputs else []:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8"):
                pass
    except OSError as error:
        print(f"error: cannot write the results there: {error}", file=sys.stderr)
        return 1
    with threadpool_limits(limits=args.blas_threads, user_api="blas"):
        results = run(args, sys.argv[1:] if argv is None else argv)
    # Each output on its own, and the report printed whatever fails: minutes of
    # measurements are never lost to one unwritable file.
    failures = []
    if plot_path is not None and results["scaling"]:
        try:
            report.plot_scaling(results["scaling"], plot_path)
            results["plot"] = str(plot_path)
        except OSError as error:
            failures.append(f"the plot: {error}")
    markdown = report.markdown(results, relative_to=args.markdown)
    print(markdown)
    for path, text in (
        (args.json, lambda: json.dumps(results, indent=2) + "\n"),
        (args.markdown, lambda: markdown),
    ):
        if path is not None:
            try:
                path.write_text(text(), "utf-8")
            except OSError as error:
                failures.append(f"{path}: {error}")
    for failure in failures:
        print(f"error: cannot write {failure}", file=sys.stderr)
    return 1 if failures else 0


def run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """Every measurement, as the JSON document.

    Keys: ``machine`` (`machine_info`), ``devices`` and ``skipped_devices`` (with the
    reason), ``models`` (`model_row`), ``scaling`` (one `benchmarks.scaling.sweep` per
    device), ``op_overhead`` (rows of device, name, what, us), ``plot`` (the path of
    ``scaling.png``, filled in by `main`), and the ``settings`` and ``command`` used.
    """
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    dtypes = list(dict.fromkeys(args.dtype or DTYPES))
    devices, available, skipped = check_devices(args.device or list(DEFAULT_DEVICES))
    load_at_start = _load_average()
    torch = None if args.no_torch else torch_reference.load_torch()
    previous_torch_threads = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(args.blas_threads)  # the same thread budget on both sides
    # torch leaves many Python objects behind; freezing them keeps the collector's full
    # passes, which would land inside the engine's timed steps, as cheap as without torch.
    gc.collect()
    gc.freeze()
    model_rows, sweeps, op_rows = [], [], []
    try:
        for device in list(available):
            try:  # a device that fails midway is reported; the others' figures stay
                rows = [row for dtype in dtypes for row in _model_rows(args, device, dtype)]
                sweep, ops = _sweep(args, device), _op_rows(args, device)
            except Exception as error:
                available.remove(device)
                skipped[device] = f"failed while measuring: {type(error).__name__}: {error}"
                _progress(f"{device}: {skipped[device]}")
                continue
            model_rows += rows
            sweeps.append(sweep)
            op_rows += ops
        machine = machine_info(args.blas_threads, torch)
        if args.no_torch:
            machine["torch"] = NO_TORCH_OPTION
        # Other processes on the machine slow every figure down: say how busy it was.
        machine["load_average"] = {"start": load_at_start, "end": _load_average()}
    finally:
        gc.unfreeze()
        if torch is not None:
            torch.set_num_threads(previous_torch_threads)
    return {
        "schema_version": 1,
        "created": created,
        "command": shlex.join(["python", "-m", "benchmarks", *argv]),
        "settings": {
            "devices": devices,
            "dtypes": dtypes,
            "quick": args.quick,
            "blas_threads": args.blas_threads,
            "repeats": args.repeat,
            "scaling_dtype": args.scaling_dtype,
            "torch_references": not args.no_torch,
        },
        "machine": machine,
        "devices": [
            {
                "device": device,
                "available": device in available,
                "name": device_name(device) if device in available else None,
                "reason": skipped.get(device),
            }
            for device in devices
        ],
        "skipped_devices": [
            {"device": device, "reason": reason} for device, reason in skipped.items()
        ],
        "models": model_rows,
        "scaling": sweeps,
        "op_overhead": op_rows,
        "plot": None,
    }


def _model_rows(args: argparse.Namespace, device: str, dtype: str) -> list[dict[str, Any]]:
    plan = _plan(args, MODEL_PLAN)
    torch_skipped = NO_TORCH_OPTION if args.no_torch else None
    specs = models.model_specs(**(QUICK_RECURRENT if args.quick else {}))
    return [model_row(spec, dtype, device, plan, _progress, torch_skipped) for spec in specs]


def _sweep(args: argparse.Namespace, device: str) -> dict[str, Any]:
    return scaling.sweep(
        device,
        args.scaling_dtype,
        plan=_plan(args, scaling.SWEEP_PLAN),
        memory_steps=2 if args.quick else scaling.MEMORY_STEPS,
        progress=_progress,
        **(scaling.QUICK if args.quick else {}),
    )


def _op_rows(args: argparse.Namespace, device: str) -> list[dict[str, Any]]:
    _progress(f"op overhead {device}")
    figures = op_overhead.measure(device, QUICK_OP_REPEAT if args.quick else OP_REPEAT)
    return [
        {"device": device, "name": name, "what": op_overhead.DESCRIPTIONS[name], "us": us}
        for name, us in figures.items()
    ]


def _plan(args: argparse.Namespace, default: Plan) -> Plan:
    """Quick runs: one warm-up and two timed calls; otherwise ``default``; ``--repeat``
    fixes the number of timed calls."""
    if args.quick:
        return Plan(warmup=1, repeats=args.repeat or 2)
    return dataclasses.replace(default, repeats=args.repeat)


def _progress(message: str) -> None:
    print(f"[benchmarks] {message}", file=sys.stderr, flush=True)


def check_devices(requested: list[str]) -> tuple[list[str], list[str], dict[str, str]]:
    """(devices, available, {device: why not}): the requested devices under their
    canonical names ("cuda" is "cuda:0"), once each and in order, split into those the
    engine can use here and those skipped. One GPU per run: the engine drives one GPU
    per process, so a second CUDA device is skipped with that reason."""
    devices, available, skipped = [], [], {}
    for device in requested:
        try:
            name = tg.get_backend(device).device
        except tg.DeviceError as error:
            name, reason = device, str(error)
        else:
            reason = None
            if name.startswith("cuda") and any(d.startswith("cuda") for d in available):
                reason = "one GPU per run (the engine drives one GPU per process): run again"
        if name in devices:
            continue
        devices.append(name)
        if reason is None:
            available.append(name)
        else:
            skipped[name] = reason
    return devices, available, skipped


def device_name(device: str) -> str:
    """What the device is: the CPU's description, or the GPU's name from CUDA."""
    if device == "cpu":
        return platform.processor() or platform.machine()
    cupy = importlib.import_module("cupy")  # available devices only: CuPy imports
    name = cupy.cuda.runtime.getDeviceProperties(cuda_index(device))["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def model_row(
    spec: models.ModelSpec,
    dtype: str,
    device: str,
    plan: Plan,
    progress: Callable[[str], None] = lambda message: None,
    torch_skipped: str | None = None,
) -> dict[str, Any]:
    """The engine, eager and compiled, and the references for one model on one device
    and dtype, timed in turns (`measure_interleaved`).

    ``engine`` (eager) and ``compiled``: {"step", "inference"}, each a `Timing` dict
    (median_ms, min_ms, max_ms, repeats); ``compiled`` also has ``step_speedup`` and
    ``inference_speedup`` (eager / compiled) and ``program`` (instructions, buffers,
    held MiB). ``hand``, ``torch`` (elementary ops), ``torch_nn``: each {"step",
    "inference", "step_ratio", "inference_ratio", "compiled_step_ratio",
    "compiled_inference_ratio", "reason"}: timings and engine / reference ratios, or
    all None and the reason it was not measured (``torch_skipped``, if given, is the
    reason for both torch references).
    """
    progress(f"{device} {dtype} {spec.label}")
    case = models.make_case(spec, dtype)
    # Each side trains its own copy of the model on one batch, and all sides are called
    # in turns as often: each is timed over the same stretch of training (a model
    # further along can run into slower arithmetic, e.g. float32 subnormals).
    sides = {
        "engine": models.engine_callables(case, device),
        "compiled": models.compiled_callables(case, device),
    }
    syncs = {"engine": synchronizer(device), "compiled": synchronizer(device)}
    reasons = {"hand": None if device == "cpu" else HAND_CPU_ONLY}
    torch_reason = torch_skipped or torch_reference.unavailable_reason(device)
    reasons["torch"] = torch_reason
    has_nn = torch_reference.has_variant(case, "nn")
    reasons["torch_nn"] = torch_reason if has_nn else NO_NN_VARIANT
    makers = {
        "hand": lambda: models.hand_callables(case),
        "torch": lambda: torch_reference.callables(case, device, "elementary"),
        "torch_nn": lambda: torch_reference.callables(case, device, "nn"),
    }
    for name, reason in reasons.items():
        if reason is None:
            sides[name] = makers[name]()
            syncs[name] = no_sync if name == "hand" else synchronizer(device, "torch")
    timings = {
        phase: measure_interleaved(
            {name: getattr(runners, phase) for name, runners in sides.items()}, plan, syncs
        )
        for phase in ("step", "infer")
    }
    measured = {
        name: {"step": timings["step"][name], "inference": timings["infer"][name]} for name in sides
    }
    engine, compiled = measured["engine"], measured["compiled"]
    program = sides["compiled"].step.program()
    return {
        "device": device,
        "dtype": dtype,
        "model": spec.name,
        "label": spec.label,
        "sizes": spec.sizes,
        "engine": {name: timing.as_dict() for name, timing in engine.items()},
        "compiled": {
            **{name: timing.as_dict() for name, timing in compiled.items()},
            "step_speedup": engine["step"].median_ms / compiled["step"].median_ms,
            "inference_speedup": engine["inference"].median_ms / compiled["inference"].median_ms,
            "program": {
                "instructions": len(program.instructions),
                "buffers": len(program.buffers),
                "held_mb": models.program_bytes(sides["compiled"].step) / 2**20,
                "graphs": getattr(program.run, "failure", "not used") or "used",
            },
        },
        **{
            name: _reference_entry(engine, compiled, measured.get(name), reasons[name])
            for name in ("hand", "torch", "torch_nn")
        },
    }


def _reference_entry(
    engine: dict[str, Timing],
    compiled: dict[str, Timing],
    timings: dict[str, Timing] | None,
    reason: str | None,
) -> dict[str, Any]:
    keys = ("step", "inference")
    if timings is None:
        entry = dict.fromkeys(keys)
        entry.update({f"{k}_ratio": None for k in keys})
        entry.update({f"compiled_{k}_ratio": None for k in keys})
        return {**entry, "reason": reason}
    entry = {k: timings[k].as_dict() for k in keys}
    entry.update({f"{k}_ratio": engine[k].median_ms / timings[k].median_ms for k in keys})
    entry.update(
        {f"compiled_{k}_ratio": compiled[k].median_ms / timings[k].median_ms for k in keys}
    )
    return {**entry, "reason": None}


def machine_info(blas_threads: int, torch: Any | None) -> dict[str, Any]:
    """Where the figures come from: platform, CPUs, Python, NumPy, BLAS, torch, CuPy."""
    libraries = [
        {
            "user_api": library.get("user_api"),
            "internal_api": library.get("internal_api"),
            "version": library.get("version"),
            "num_threads": library.get("num_threads"),
            "architecture": library.get("architecture"),
            "threading_layer": library.get("threading_layer"),
            "file": os.path.basename(library.get("filepath") or ""),
        }
        for library in threadpool_info()
    ]
    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(affinity(0)) if affinity else os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": [library for library in libraries if library["user_api"] == "blas"],
        "thread_pools": libraries,
        "blas_threads": blas_threads,
        "torch": None if torch is None else torch.__version__,
        "torch_threads": None if torch is None else torch.get_num_threads(),
        "cupy": _cupy_version(),
    }


def _load_average() -> list[float] | None:
    """The system's 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(load, 2) for load in os.getloadavg()]
    except (AttributeError, OSError):  # Windows has no getloadavg
        return None


def _cupy_version() -> str | None:
    if importlib.util.find_spec("cupy") is None:
        return None
    try:
        return importlib.import_module("cupy").__version__
    except Exception as error:  # installed but broken: say so rather than fail the report
        return f"installed, fails to import ({type(error).__name__})"
