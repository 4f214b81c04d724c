"""What a training run writes while it trains: bars on a terminal, redrawn at a bounded
rate; one line per epoch anywhere else; nothing with --no-progress."""

import io
import time

import pytest
from tinygrad_ee.tasks.progress import REDRAW_SECONDS, Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def one_epoch(stream, shown: bool = True, batches: int = 3000) -> float:
    """A run of one epoch of ``batches`` batches reported to ``stream``: its seconds."""
    start = time.perf_counter()
    progress = Progress("run", 1, 0, shown, stream)
    progress.start_epoch(1, 0, batches)
    for number in range(1, batches + 1):
        progress.batch(1, number, 0.25)
    progress.end_epoch([0.25], [0.5], 1.5)
    progress.close()
    return time.perf_counter() - start


def test_bars_on_a_terminal_are_redrawn_at_a_bounded_rate():
    terminal = Terminal()
    seconds = one_epoch(terminal)
    shown = terminal.getvalue()
    assert "loss=0.2500" in shown and "run: 100%" in shown and "val=0.5000" in shown
    # one redraw per batch before (set_postfix redrew at once): 3000 here
    assert shown.count("\r") <= 2 * (seconds / REDRAW_SECONDS) + 10, shown.count("\r")


def test_elsewhere_one_line_per_epoch():
    log = io.StringIO()
    one_epoch(log)
    assert log.getvalue() == "run: epoch 1/1: loss 0.2500, validation 0.5000, 1.5 s\n"


@pytest.mark.parametrize("stream", [Terminal, io.StringIO])
def test_no_progress_writes_nothing(stream):
    stream = stream()
    one_epoch(stream, shown=False)
    assert stream.getvalue() == ""
