"""What the machine can do natively, for choices made by measurement (training and embedding precision)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path


def bf16_native(device: str = "cpu") -> bool:
    """Whether bf16 matrix products run natively: a GPU with bf16, or a CPU with AVX-512 BF16 or AMX
    instructions. Elsewhere bf16 is emulated and slower than fp32, so callers keep fp32."""
    kind = str(device).split(":")[0]
    if kind == "cuda":
        import torch

        return torch.cuda.is_bf16_supported()
    return kind == "cpu" and _cpu_has_bf16()


@lru_cache(maxsize=1)
def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: no cheap way to tell, so no bf16
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
