"""What a benchmark ran on, recorded beside its figures."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from rnnlab.core.resolvers import native_bf16


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "torch": torch.__version__, "python": platform.python_version(),
            "bf16_cpu": native_bf16(),  # what ${bf16_if_supported:} decides on
            # other work on the cores shows in every figure: they are only worth what the load beside them allows
            "load_average_1min_before": round(os.getloadavg()[0], 2)}
