"""GPU metrics through NVML (the ``nvidia-ml-py`` package, module ``pynvml``), when it is installed and a GPU is
present; otherwise nothing, silently (a CPU machine has no GPU to report).

For each GPU this process may use (those named by ``CUDA_VISIBLE_DEVICES`` when it lists indices, else all):
``gpu/<i>/utilization_percent``, ``gpu/<i>/memory_used_gb``, ``gpu/<i>/memory_percent``, ``gpu/<i>/temperature_c``
and ``gpu/<i>/power_w``, where ``<i>`` is the index as CUDA numbers the visible devices. A reading a GPU does not
support (power on some boards) is left out of that sample.

Not tested on this project's CI machines, which have no GPU.
"""

from __future__ import annotations

import os
from typing import Any

_GB = float(1 << 30)


class Gpus:
    """Open NVML handles for the GPUs this process may use."""

    def __init__(self, nvml: Any, handles: list[Any]) -> None:
        self.nvml = nvml
        self.handles = handles

    def sample(self) -> dict[str, float]:
        """One reading of every GPU, keyed ``gpu/<i>/<metric>``."""
        nvml = self.nvml
        values: dict[str, float] = {}
        for index, handle in enumerate(self.handles):
            readings = {
                "utilization_percent": lambda h: nvml.nvmlDeviceGetUtilizationRates(h).gpu,
                "memory_used_gb": lambda h: nvml.nvmlDeviceGetMemoryInfo(h).used / _GB,
                "memory_percent": lambda h: _memory_percent(nvml.nvmlDeviceGetMemoryInfo(h)),
                "temperature_c": lambda h: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU),
                "power_w": lambda h: nvml.nvmlDeviceGetPowerUsage(h) / 1000.0,  # NVML reports milliwatts
            }
            for name, read in readings.items():
                try:
                    values[f"gpu/{index}/{name}"] = float(read(handle))
                except nvml.NVMLError:
                    continue  # not supported by this board: left out
        return values

    def close(self) -> None:
        """Release NVML."""
        try:
            self.nvml.nvmlShutdown()
        except self.nvml.NVMLError:
            pass


def open_gpus() -> Gpus | None:
    """NVML's handles for the visible GPUs, or None without nvidia-ml-py, without a driver or without a GPU."""
    try:
        import pynvml as nvml
    except ImportError:
        return None
    try:
        nvml.nvmlInit()
        count = nvml.nvmlDeviceGetCount()
        indices = visible_indices(os.environ.get("CUDA_VISIBLE_DEVICES"), count)
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in indices]
    except nvml.NVMLError:
        return None
    return Gpus(nvml, handles) if handles else None


def visible_indices(visible: str | None, count: int) -> list[int]:
    """The physical GPU indices CUDA_VISIBLE_DEVICES lets this process use, in CUDA's order.

    Unset: all of them. Empty: none. UUIDs (``GPU-...``) are not mapped to indices here, so all are reported."""
    if visible is None:
        return list(range(count))
    chosen: list[int] = []
    for part in visible.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.lstrip("-").isdigit():
            return list(range(count))
        index = int(part)
        if index < 0 or index >= count:
            break  # CUDA ignores this entry and every one after it
        chosen.append(index)
    return chosen


def _memory_percent(info: Any) -> float:
    return 100.0 * info.used / info.total if info.total else 0.0
