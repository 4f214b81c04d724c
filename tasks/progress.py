"""What a training run shows while it trains, on stderr. On a terminal: tqdm bars, one
for the epochs and one for the current epoch's batches, redrawn at most every
`REDRAW_SECONDS`. Anywhere else (a file, a pipe, nohup, CI, a job scheduler): one line
per epoch, nothing per batch. With ``shown=False`` (--no-progress): nothing.
"""

from __future__ import annotations

import sys
from typing import IO

from tqdm import tqdm

REDRAW_SECONDS = 0.2  # the least time between two redraws of a bar


def note(text: str) -> None:
    """A message for the user on stderr that does not break the progress bars."""
    tqdm.write(text, file=sys.stderr)


class Progress:
    """The progress of the run ``description`` (such as "activity gru") of ``epochs``
    epochs, ``done`` of them trained before, written to ``stream`` (default stderr)."""

    def __init__(self, description: str, epochs: int, done: int, shown: bool, stream: IO = None):
        self.description, self.total = description, epochs
        self.stream = sys.stderr if stream is None else stream
        self.bars = shown and self.stream.isatty()
        self.lines = shown and not self.bars
        self.bar = {"file": self.stream, "mininterval": REDRAW_SECONDS, "disable": not self.bars}
        self.epochs = tqdm(desc=description, total=epochs, initial=done, unit="epoch", **self.bar)

    def start_epoch(self, epoch: int, first: int, total: int) -> None:
        """Epoch ``epoch`` (from 1), of ``total`` batches, starts after batch ``first``."""
        bar = {"desc": f"epoch {epoch}", "leave": False, **self.bar}
        self.batches = tqdm(total=total, initial=first, **bar)

    def batch(self, epoch: int, number: int, loss: float) -> None:
        """Batch ``number`` of epoch ``epoch`` (both from 1) is trained, with ``loss``."""
        if self.bars:  # drawn with the bar, at its pace (set_postfix alone would redraw)
            self.batches.set_postfix(loss=f"{loss:.4f}", refresh=False)
            self.batches.update()

    def end_epoch(self, train: list[float], validation: list[float], seconds: float) -> None:
        """An epoch ended, in ``seconds``: ``train`` and ``validation`` are the losses of
        every epoch so far (``validation`` empty: the run has none)."""
        self.batches.close()
        losses = {"loss": train, "val": validation}
        self.epochs.set_postfix({k: f"{v[-1]:.4f}" for k, v in losses.items() if v}, refresh=False)
        self.epochs.update()
        if self.lines:
            line = f"{self.description}: epoch {len(train)}/{self.total}: loss {train[-1]:.4f}"
            line += f", validation {validation[-1]:.4f}" if validation else ""
            print(f"{line}, {seconds:.3g} s", file=self.stream, flush=True)

    def close(self) -> None:
        self.epochs.close()
