"""The results of ``python -m benchmarks`` as readable tables (markdown) and a plot.

Both read the JSON document that `benchmarks.suite.run` builds, and nothing else, so
a saved ``results.json`` can be re-rendered later.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MISSING = "-"
REFERENCES = (  # (key in a model row, column title, what it is)
    ("hand", "hand", "hand-derived NumPy step (benchmarks/reference.py)"),
    ("torch", "torch", "PyTorch eager, the same model from elementary ops (same graph)"),
    ("torch_nn", "torch.nn", "PyTorch eager, torch.nn.RNN/LSTM/GRU + the same MLP head"),
)


def _number(value: float | None) -> str:
    """Milliseconds or MiB with about three significant digits."""
    if value is None:
        return MISSING
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _ratio(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> list[str]:
    """Markdown table lines; ``align`` has one letter per column, "l" or "r"."""
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def markdown(results: dict[str, Any], relative_to: Path | None = None) -> str:
    """The whole report. ``relative_to``: the markdown file's path, so that the plot is
    linked relative to it."""
    lines = [
        "# tinygrad-ee benchmarks",
        "",
        f"`{results['command']}`, {results['created']}. Wall times in milliseconds "
        "after warm-up; medians unless said otherwise.",
        "",
    ]
    lines += _machine_section(results)
    lines += _models_section(results)
    lines += _scaling_section(results, relative_to)
    lines += _op_section(results)
    return "\n".join(lines).rstrip() + "\n"


def _machine_section(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    blas = (
        ", ".join(
            f"{lib['internal_api']} {lib['version']} ({lib['architecture']}), "
            f"{lib['num_threads']} thread(s)"
            for lib in m["blas"]
        )
        or "not found"
    )
    torch = m["torch"] or "not installed"
    if m["torch_threads"] is not None:
        torch = f"{torch}, {m['torch_threads']} thread(s)"
    rows = [
        ["platform", m["platform"]],
        ["CPUs", f"{m['cpu_count']} ({m['usable_cpus']} usable by this process)"],
        ["Python", m["python"]],
        ["NumPy", m["numpy"]],
        ["BLAS", f"{blas} (limit: {m['blas_threads']})"],
        ["PyTorch", torch],
        ["CuPy", m["cupy"] or "not installed"],
    ]
    load = m.get("load_average") or {}
    if load.get("start") and load.get("end"):
        rows.append(
            [
                "load average (1 min)",
                f"{load['start'][0]} at the start, {load['end'][0]} at the end "
                f"(other processes on {m['usable_cpus']} CPUs slow every figure down)",
            ]
        )
    lines = ["## Machine", ""] + _table(["", ""], rows, "ll") + ["", "## Devices", ""]
    device_rows = [
        [d["device"], f"measured ({d['name']})" if d["available"] else f"skipped: {d['reason']}"]
        for d in results["devices"]
    ]
    return lines + _table(["device", "status"], device_rows, "ll") + [""]


def _models_section(results: dict[str, Any]) -> list[str]:
    rows = results["models"]
    if not rows:
        return ["## Models", "", "No device was measured.", ""]

    def spread(timing: dict) -> str:
        return f"{_number(timing['min_ms'])}-{_number(timing['max_ms'])}"

    lines = [
        "## Engine: one training step and one inference pass",
        "",
        "Training step: forward, backward, SGD-momentum update. Inference: forward under "
        "`no_grad()`. Eager (op by op) and compiled (`tg.compile`: traced once, then the "
        "array program replayed); median, range (min-max) and number of timed calls. "
        "Speedup = eager / compiled. All sides of a model were timed in turns.",
        "",
    ]
    engine_rows = []
    for row in rows:
        compiled = row["compiled"]
        cells = [row["device"], row["dtype"], row["label"]]
        for phase in ("step", "inference"):
            eager, fast = row["engine"][phase], compiled[phase]
            cells += [_number(eager["median_ms"]), spread(eager), _number(fast["median_ms"])]
            cells += [spread(fast), _ratio(compiled[f"{phase}_speedup"])]
        cells.append(eager["repeats"])
        engine_rows.append(cells)
    header = ["device", "dtype", "model"]
    for phase in ("step", "inference"):
        header += [f"{phase} eager ms", "range", f"{phase} compiled ms", "range", "speedup"]
    header.append("n")
    lines += _table(header, engine_rows, "lll" + "r" * (len(header) - 3)) + [""]
    program_rows = [
        [
            row["device"],
            row["dtype"],
            row["label"],
            row["compiled"]["program"]["instructions"],
            row["compiled"]["program"]["buffers"],
            _number(row["compiled"]["program"]["held_mb"]),
            row["compiled"]["program"]["graphs"],
        ]
        for row in rows
    ]
    lines += [
        "Compiled programs: instructions replayed per step, buffers reused, memory held "
        "between steps, and whether CUDA graphs ran.",
        "",
    ]
    header = ["device", "dtype", "model", "instructions", "buffers", "held MiB", "CUDA graphs"]
    lines += _table(header, program_rows, "lllrrrl") + [""]

    lines += [
        "## Engine against references",
        "",
        "Ratio = engine time / reference time (< 1: the engine is faster), for the eager "
        "and the compiled engine. "
        + "; ".join(f"**{title}**: {what}" for _, title, what in REFERENCES)
        + ".",
        "",
    ]
    for phase, title in (("step", "Training step"), ("inference", "Inference pass")):
        header = ["device", "dtype", "model", "eager ms", "compiled ms"]
        for _, name, _ in REFERENCES:
            header += [f"{name} ms", f"eager / {name}", f"compiled / {name}"]
        table_rows = []
        for row in rows:
            cells = [row["device"], row["dtype"], row["label"]]
            cells.append(_number(row["engine"][phase]["median_ms"]))
            cells.append(_number(row["compiled"][phase]["median_ms"]))
            for key, _, _ in REFERENCES:
                entry = row[key]
                timing = entry[phase]
                cells.append(_number(timing["median_ms"]) if timing else MISSING)
                cells.append(_ratio(entry[f"{phase}_ratio"]))
                cells.append(_ratio(entry[f"compiled_{phase}_ratio"]))
            table_rows.append(cells)
        lines += [f"### {title}", ""]
        lines += _table(header, table_rows, "lll" + "r" * (len(header) - 3)) + [""]

    # why some references are missing, once per (reference, reason)
    missing: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        for key, name, _ in REFERENCES:
            reason = row[key]["reason"]
            if reason is not None:
                where = missing.setdefault((name, reason), [])
                place = f"{row['device']}/{row['model']}"
                if place not in where:
                    where.append(place)
    if missing:
        lines += ["Not measured:", ""]
        for (name, reason), places in missing.items():
            lines.append(f"- {name} ({', '.join(places)}): {reason}")
        lines.append("")
    return lines


def _scaling_section(results: dict[str, Any], relative_to: Path | None) -> list[str]:
    sweeps = results["scaling"]
    if not sweeps:
        return []
    first = sweeps[0]["time_steps"][0]
    lines = [
        f"## Scaling: LSTM classifier, H = {first['H']}, {first['dtype']}",
        "",
        "Time and memory of one training step, eager and compiled. Peak: the most memory "
        "held during the step above what was held before it (compiled: plus the buffers "
        "its program keeps between steps); retained: what is still held after each of "
        "consecutive steps (it must not grow: `released` = it grows by at most 1 % of the "
        "peak + 10 KiB). CPU memory from tracemalloc, CUDA memory from CuPy's memory pool.",
        "",
    ]
    for key, axis, unit in (("time_steps", "T", "time step"), ("batch", "B", "sample")):
        held = "B" if axis == "T" else "T"
        value = sweeps[0][key][0][held]
        lines += [
            f"### Against {'sequence length T' if axis == 'T' else 'batch size B'}"
            f" ({held} = {value})",
            "",
        ]
        header = [
            "device",
            axis,
            "step ms",
            f"ms per {unit}",
            "compiled ms",
            "peak MiB",
            f"peak MiB per {unit}",
            "compiled peak MiB",
            "retained MiB after each step",
            "released",
        ]
        table_rows = []
        for sweep in sweeps:
            for row in sweep[key]:
                size = row[axis]
                table_rows.append(
                    [
                        sweep["device"],
                        size,
                        _number(row["step"]["median_ms"]),
                        f"{row['step']['median_ms'] / size:.3f}",
                        _number(row["compiled_step"]["median_ms"]),
                        _number(row["peak_mb"]),
                        f"{row['peak_mb'] / size:.3f}",
                        _number(row["compiled_peak_mb"]),
                        ", ".join(f"{mb:.3f}" for mb in row["retained_mb"]),
                        "yes" if row["released"] else "NO",
                    ]
                )
        lines += _table(header, table_rows, "lrrrrrrrll") + [""]
        for sweep in sweeps:
            fits = sweep["fits"]
            peak, time = fits[f"peak_mb_vs_{axis}"], fits[f"step_ms_vs_{axis}"]
            lines.append(
                f"- {sweep['device']}, least-squares lines: "
                f"peak = {_fit(peak, 'MiB', axis)}; step = {_fit(time, 'ms', axis)}"
            )
        lines.append("")
    plot = results.get("plot")
    if plot:
        link = os.path.relpath(plot, relative_to.parent) if relative_to is not None else plot
        lines += [
            f"![LSTM scaling: time and peak memory against T and B]({Path(link).as_posix()})",
            "",
        ]
    return lines


def _fit(fit: dict[str, float], unit: str, axis: str) -> str:
    return (
        f"{fit['slope']:.4g} {unit} x {axis} {fit['intercept']:+.4g} {unit} "
        f"(R^2 {fit['r_squared']:.4f}, worst point {100 * fit['max_relative_residual']:.1f} % off)"
    )


def _op_section(results: dict[str, Any]) -> list[str]:
    rows = results["op_overhead"]
    if not rows:
        return []
    lines = [
        "## Per-op overhead",
        "",
        "A (32, 128) float32 input; median microseconds per call (benchmarks/op_overhead.py).",
        "",
    ]
    table_rows = [[row["device"], row["what"], f"{row['us']:.2f}"] for row in rows]
    return lines + _table(["device", "what", "us"], table_rows, "llr") + [""]


def plot_scaling(sweeps: list[dict[str, Any]], path: Path) -> None:
    """Four panels, one line per device: step time and peak memory against T and against B.

    Drawn with matplotlib's Agg canvas (no display needed) and saved as a PNG at ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 7.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 2)
    panels = (
        (axes[0, 0], "time_steps", "T", "step", "step time (ms)"),
        (axes[0, 1], "time_steps", "T", "peak_mb", "peak memory (MiB)"),
        (axes[1, 0], "batch", "B", "step", "step time (ms)"),
        (axes[1, 1], "batch", "B", "peak_mb", "peak memory (MiB)"),
    )
    for ax, key, axis, figure_key, ylabel in panels:
        for sweep in sweeps:
            rows = sweep[key]
            xs = [row[axis] for row in rows]
            ys = [
                row["step"]["median_ms"] if figure_key == "step" else row[figure_key]
                for row in rows
            ]
            ax.plot(xs, ys, "o-", label=f"{sweep['device']} {sweep['dtype']}")
        held = "B" if axis == "T" else "T"
        held_value = sweeps[0][key][0][held] if sweeps else "?"
        ax.set_xlabel(
            f"{'sequence length T' if axis == 'T' else 'batch size B'} ({held} = {held_value})"
        )
        ax.set_ylabel(ylabel)
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        if sweeps:
            ax.legend()
    figure.suptitle("LSTM classifier, one training step (tinygrad-ee)")
    figure.savefig(path, dpi=100)
