"""The figures of the reports (matplotlib, Agg backend: no screen needed)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .files import atomic_open


def save_figure(path: Path, draw: Callable[[Any], None], size=(6.0, 4.0)) -> None:
    """Draw on a fresh matplotlib figure (Agg: no screen needed) and save it as PNG."""
    import matplotlib  # imported here: a run that draws nothing does not load it

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure = plt.figure(figsize=size)
    try:
        draw(figure)
        with atomic_open(path, "wb") as file:
            figure.savefig(file, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(figure)


def image_grid(
    path: Path,
    images: np.ndarray,
    title: str,
    columns: int | None = None,
    scale: tuple[float, float] | None = None,
) -> None:
    """A grid of small images: (N, H, W) grey or (N, H, W, 3) colour.

    ``scale=(low, high)`` maps that range to black..white for every image; None scales
    each image to its own min/max (weights have no common scale). The grid is tiled
    into one picture with a 1-pixel gap: one imshow, however many images.
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
    scaled = (flat - low[:, None]) / span[:, None]
    scaled = scaled.reshape(images.shape)
    channels = images.shape[3:]  # () for grey, (3,) for colour
    canvas = np.ones((rows * (height + 1) + 1, columns * (width + 1) + 1, *channels))
    for i, image in enumerate(scaled):
        top, left = 1 + (i // columns) * (height + 1), 1 + (i % columns) * (width + 1)
        canvas[top : top + height, left : left + width] = image

    def draw(figure):
        axis = figure.add_subplot()
        axis.imshow(
            canvas, cmap=None if channels else "gray", vmin=0, vmax=1, interpolation="nearest"
        )
        axis.set_title(title)
        axis.axis("off")

    save_figure(path, draw, size=(min(12.0, columns * 0.45 + 1), min(12.0, rows * 0.45 + 1)))


def curves(
    path: Path, series: Mapping[str, Sequence[float]], title: str, xlabel: str, ylabel: str
) -> None:
    """One line per named series, against epochs counted from 1."""

    def draw(figure):
        axis = figure.add_subplot()
        for name, values in series.items():
            axis.plot(
                range(1, len(values) + 1),
                values,
                marker="." if len(values) < 60 else None,
                label=name,
            )
        axis.set(title=title, xlabel=xlabel, ylabel=ylabel)
        axis.grid(alpha=0.3)
        if len(series) > 1:
            axis.legend()

    save_figure(path, draw)


def confusion_matrix(
    path: Path, matrix: np.ndarray, class_names: Sequence[str], title: str
) -> None:
    """matrix[i, j]: how many samples of true class i were predicted as class j."""

    def draw(figure):
        axis = figure.add_subplot()
        axis.imshow(matrix, cmap="Blues")
        ticks = range(len(class_names))
        axis.set_xticks(ticks, class_names, rotation=45, ha="right")
        axis.set_yticks(ticks, class_names)
        axis.set(title=title, xlabel="predicted", ylabel="true")
        for i in ticks:
            for j in ticks:
                colour = "white" if matrix[i, j] > matrix.max() / 2 else "black"
                axis.text(j, i, int(matrix[i, j]), ha="center", va="center", color=colour)

    size = max(4.0, 0.7 * len(class_names) + 2)
    save_figure(path, draw, size=(size, size))
