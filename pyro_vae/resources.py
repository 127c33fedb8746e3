"""Free memory on a device, and the up-front refusal of work that cannot fit in it: shared by the data loaders
(images too large to hold) and the estimators (evaluation/memory.py)."""

from __future__ import annotations

from pathlib import Path

import torch

from pyro_vae.errors import UsageError

MEMINFO = Path("/proc/meminfo")


def available_bytes(device: torch.device | str) -> int | None:
    """Free memory on ``device``: CUDA's free memory, or Linux's MemAvailable; None when unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def require_memory(needed: int, device: torch.device | str, what: str, remedy: str) -> None:
    """A UsageError when ``needed`` bytes exceed the free memory of ``device``."""
    free = available_bytes(device)
    if free is not None and needed > free:
        raise UsageError(f"{what} needs at least {gigabytes(needed)} of memory, and {torch.device(device).type} has "
                         f"{gigabytes(free)} free: {remedy}")


def gigabytes(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n < 2**50 else f"{n / 2**30:.2g} GB"
