"""The config's OmegaConf resolvers: `${bf16_if_supported:}` (bf16-mixed where the processor computes in bf16
natively, else 32-true) and `${times:a,b}`. Registered on import; `rnnlab.cli` imports this module before Hydra
composes a config, and `rnnlab.core.trainer` imports it for in-process Trainers.

Kept apart from rnnlab.core.trainer and free of torch and Lightning at module level: every Hydra command
composes the config, and the register and evaluate stages should not pay for Lightning's import (5-7 s on
2 cores) just to have the resolvers; `native_bf16` imports torch only when the resolver is evaluated.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf


def native_bf16() -> bool:
    """Whether bf16 runs natively here: a CUDA GPU that supports it, else a CPU with AVX-512 BF16 or AMX (oneDNN
    emulates bf16 on other CPUs, and the emulation is slower than float32)."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: no way to tell, keep float32
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


OmegaConf.register_new_resolver("bf16_if_supported", lambda: "bf16-mixed" if native_bf16() else "32-true",
                                replace=True)
# `${times:a,b}`: a number times a number (conf/scheduler/cosine.yaml: the schedule's floor, a fraction of the rate)
OmegaConf.register_new_resolver("times", lambda a, b: float(a) * float(b), replace=True)
