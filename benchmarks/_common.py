"""Shared by the benchmark scripts: what machine this is, and where results go."""

import datetime
import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    import torch
    import transformers

    info = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
    try:
        with open("/proc/meminfo") as handle:
            info["memory_gib"] = round(int(handle.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return info


def write(name: str, rows: list, extra: dict | None = None, folder: Path | None = None) -> Path:
    folder = folder or RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    payload = {"machine": machine(), **(extra or {}), "rows": rows}
    path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return path


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def start_peak_rss() -> float:
    """Give freed memory back to the OS, reset the kernel's peak-RSS mark, return the RSS now (MB).

    With ``peak_rss_since(start)`` this measures the peak of one code section alone: not the model
    construction before it, and not memory the allocator happens to keep from earlier work.
    """
    import ctypes
    import gc

    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    return _status_mb("VmRSS")


def peak_rss_since(start_mb: float) -> float:
    """Peak RSS growth (MB) since ``start_peak_rss()``."""
    return _status_mb("VmHWM") - start_mb
