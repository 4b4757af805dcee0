"""System metrics: CPU, memory and GPUs sampled on a background thread as ``system/...`` series.

``init()`` starts a :class:`~expertrack.system.sampler.SystemSampler` for a recording run (docs/distributed.md,
"System metrics"). psutil (the ``system`` extra) and NVML (``nvidia-ml-py``, the ``gpu`` extra) are imported by the
sampler's thread, never by ``import expertrack``.
"""

from __future__ import annotations

from expertrack.system.sampler import DEFAULT_INTERVAL_S, SystemSampler, sampling_interval
from expertrack.system.sampler import PREFIX as SYSTEM_PREFIX

__all__ = ["DEFAULT_INTERVAL_S", "SYSTEM_PREFIX", "SystemSampler", "sampling_interval"]
