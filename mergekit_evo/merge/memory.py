"""Memory planning for the resident merger: what merging the input models in memory needs, and what is free.

Read from safetensors headers before anything is loaded, so a run that cannot fit is told so (or falls back to the
disk merger) in a second instead of failing an hour in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mergekit_evo.store.files import safetensors_tensors

_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes the resident merger needs on its device, and what it may use there."""

    sources: int
    output: int
    working: int
    available: int
    limit: str  # what bounds `available`: the device's free memory or the user's max_memory

    @property
    def needed(self) -> int:
        return self.sources + self.output + self.working

    @property
    def fits(self) -> bool:
        return self.needed <= self.available

    def describe(self) -> str:
        return (
            f"needs {human_bytes(self.needed)} (sources {human_bytes(self.sources)}, merged model "
            f"{human_bytes(self.output)}, working space {human_bytes(self.working)}); "
            f"{human_bytes(self.available)} available ({self.limit})"
        )


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def free_memory(device: str) -> int:
    if device.startswith("cuda"):
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    import psutil  # imported here: only a resident merge on the CPU asks

    return int(psutil.virtual_memory().available)


def tensor_sizes(model_dir: Path, dtype: str | None) -> list[int]:
    """Bytes of each tensor of a saved model at the merge dtype, read from safetensors headers (nothing is loaded)."""
    target = torch.tensor([], dtype=getattr(torch, dtype)).element_size() if dtype else None
    sizes: list[int] = []
    files = sorted(Path(model_dir).glob("*.safetensors"))
    for path in files:
        for info in safetensors_tensors(path).values():
            count = 1
            for d in info["shape"]:
                count *= d
            floating = info["dtype"] in ("F64", "F32", "F16", "BF16")
            sizes.append(count * (target if target and floating else _DTYPE_BYTES.get(info["dtype"], 4)))
    if not files:  # pytorch_model*.bin and other formats: their file sizes are the best cheap estimate
        sizes = [p.stat().st_size for p in Path(model_dir).glob("*.bin")]
    return sizes


def plan_memory(refs: list[str], dtype: str | None, device: str, max_memory: int | None) -> MemoryPlan:
    """What merging `refs` (the input models, base included) in memory needs, against what the device offers."""
    per_model = [tensor_sizes(Path(ref), dtype) for ref in refs]
    sources = sum(sum(s) for s in per_model)
    output = max((sum(s) for s in per_model), default=0)
    largest = max((max(s, default=0) for s in per_model), default=0)
    # a tensor group: every input, promoted to float32 at worst, plus the delta and result mergekit computes
    working = largest * (len(refs) + 3) * 2
    available, limit = free_memory(device), f"free memory on {device}"
    if max_memory is not None and max_memory < available:
        available, limit = int(max_memory), "merger.options.max_memory"
    return MemoryPlan(sources, output, working, available, limit)
