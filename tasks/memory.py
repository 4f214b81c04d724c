"""Sizes that cannot fit: a lower bound on the memory a run needs, from its settings,
checked before the model is made, so that ``--hidden-size 1000000000`` is a clear
error naming the size instead of a MemoryError traceback."""

from __future__ import annotations

import importlib
import os

import numpy as np

from tinygrad_ee import get_backend


class TooLarge(ValueError):
    """Settings whose parameters and activations cannot fit in the device's memory."""


def device_memory(device: str) -> tuple[int, str] | None:
    """(bytes, what they are) of the memory that holds ``device``'s arrays: the GPU's
    for CUDA, the machine's RAM otherwise; None where it cannot be found out."""
    backend = get_backend(device)
    if backend.device.startswith("cuda"):
        index = int(backend.device.partition(":")[2])
        total = importlib.import_module("cupy").cuda.Device(index).mem_info[1]
        return total, f"GPU {backend.device}"
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX
        return None
    return total, "this machine's memory"


def byte_size(count: float) -> str:
    """1536 -> "1.5 KiB"."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if count < 1024 or unit == "PiB":
            return f"{count:.3g} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def check_fits(setting: str, parameters: int, activations: int, dtype: str, device: str) -> None:
    """Raise TooLarge naming ``setting`` (e.g. "--hidden-size 1000000000") when its
    ``parameters`` (held three times: values, gradients, momentum buffers) and
    ``activations`` (what one batch or evaluation keeps, at least), as ``dtype`` floats,
    need more bytes than the device has."""
    needed = (3 * parameters + activations) * np.dtype(dtype).itemsize
    memory = device_memory(device)
    if memory is None or needed <= memory[0]:
        return
    total, where = memory
    raise TooLarge(
        f"{setting}: {parameters:,} parameters and {activations:,} activations need at "
        f"least {byte_size(needed)} in {dtype} (values, gradients and momentum buffers), "
        f"more than the {byte_size(total)} of {where}; choose a smaller size"
    )
