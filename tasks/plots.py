"""The figures of the reports, as PNG files (matplotlib, Agg backend: no screen needed)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .files import atomic_open


@contextlib.contextmanager
def _figure(path: Path, size=(6.0, 4.0)) -> Iterator[Any]:
    """The axes of a fresh figure of ``size`` inches, saved to ``path`` at the end."""
    import matplotlib  # imported here: a run that draws nothing does not load it

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure = plt.figure(figsize=size)
    try:
        yield figure.add_subplot()
        with atomic_open(path, "wb") as file:
            figure.savefig(file, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(figure)


def image_grid(path: Path, images: np.ndarray, title: str, columns=None, scale=None) -> None:
    """A grid of small images: (N, H, W) grey or (N, H, W, 3) colour.

    ``columns``: per row (default: a square); ``scale=(low, high)`` maps that range to
    black..white for every image, None each image's own min/max (weights have no common
    scale). Tiled into one picture with 1-pixel gaps: one imshow, however many images.
    """
    count, height, width = images.shape[:3]
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    flat = images.reshape(count, -1)
    if scale is None:
        low, high = flat.min(axis=1), flat.max(axis=1)
    else:
        low, high = np.full(count, scale[0]), np.full(count, scale[1])
    span = np.where(high > low, high - low, 1.0)
    scaled = ((flat - low[:, None]) / span[:, None]).reshape(images.shape)
    channels = images.shape[3:]  # () for grey, (3,) for colour
    canvas = np.ones((rows * (height + 1) + 1, columns * (width + 1) + 1, *channels))
    for i, image in enumerate(scaled):
        top, left = 1 + (i // columns) * (height + 1), 1 + (i % columns) * (width + 1)
        canvas[top : top + height, left : left + width] = image
    size = (min(12.0, columns * 0.45 + 1), min(12.0, rows * 0.45 + 1))
    with _figure(path, size) as axis:
        grey = None if channels else "gray"
        axis.imshow(canvas, cmap=grey, vmin=0, vmax=1, interpolation="nearest")
        axis.set_title(title)
        axis.axis("off")


def curves(path: Path, series: Mapping[str, Sequence[float]], title: str, xlabel: str, ylabel: str):
    """One line per named series, against epochs counted from 1."""
    with _figure(path) as axis:
        for name, values in series.items():
            marker = "." if len(values) < 60 else None
            axis.plot(range(1, len(values) + 1), values, marker=marker, label=name)
        axis.set(title=title, xlabel=xlabel, ylabel=ylabel)
        axis.grid(alpha=0.3)
        if len(series) > 1:
            axis.legend()


def confusion_matrix(path: Path, matrix: np.ndarray, class_names: Sequence[str], title: str):
    """matrix[i, j]: how many samples of true class i were predicted as class j."""
    size = max(4.0, 0.7 * len(class_names) + 2)
    with _figure(path, (size, size)) as axis:
        axis.imshow(matrix, cmap="Blues")
        ticks = range(len(class_names))
        axis.set_xticks(ticks, class_names, rotation=45, ha="right")
        axis.set_yticks(ticks, class_names)
        axis.set(title=title, xlabel="predicted", ylabel="true")
        for i in ticks:
            for j in ticks:
                colour = "white" if matrix[i, j] > matrix.max() / 2 else "black"
                axis.text(j, i, int(matrix[i, j]), ha="center", va="center", color=colour)
