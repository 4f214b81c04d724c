"""The memory bound: settings whose model cannot fit in the memory of the run's device
are refused (`TooLarge`, naming the setting) before the model is made."""

from __future__ import annotations

import numpy as np

import tinygrad_ee as tg


class TooLarge(ValueError):
    """Settings whose parameters and activations cannot fit in the device's memory."""


def check_fits(settings, setting: str, parameters: int, activations: int) -> None:
    """Raise TooLarge naming ``setting`` (such as "--hidden-size 1000000000") when its
    ``parameters`` (held with their gradients and optimiser state: 3 times with SGD, 4
    with Adam) and ``activations`` (what a batch or an evaluation keeps, at least) need
    more memory than the device of ``settings`` (a `tasks.experiment.Settings`) has: a
    lower bound."""
    memory = tg.get_backend(settings.device).memory_bytes()
    copies = 4 if settings.training.optimizer == "adam" else 3
    needed = (copies * parameters + activations) * np.dtype(settings.dtype).itemsize
    if memory is not None and needed > memory:
        where = f"GPU {settings.device}" if settings.device.startswith("cuda") else "this machine"
        raise TooLarge(
            f"{setting}: {parameters:,} parameters and {activations:,} activations need at "
            f"least {byte_size(needed)} in {settings.dtype} (values, gradients and optimiser "
            f"state), more than the {byte_size(memory)} of {where}; choose a smaller size"
        )


def byte_size(count: float) -> str:
    """1536 -> "1.5 KiB"."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024:
            return f"{count:.3g} {unit}"
        count /= 1024
    return f"{count:.3g} PiB"
