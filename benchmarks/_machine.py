"""What the benchmarks print about the machine they ran on, shared by every script here.

The scripts run as ``python benchmarks/<name>.py``, so this folder is on ``sys.path`` and they
import it as ``_machine``.
"""

from __future__ import annotations

import contextlib
import os
import platform

import jax


def describe_machine() -> str:
    """CPU model, usable and total cores, OS, Python, jax and the default device."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 0
    device = jax.devices()[0]
    return (
        f"{cpu} ({platform.machine()}), {cores} usable of {os.cpu_count()} cores, "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}, "
        f"jax {jax.__version__}, device {device.platform}:{device.device_kind}"
    )


def load_average() -> str:
    """The 1, 5 and 15-minute load averages ("?" where the OS has none)."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
