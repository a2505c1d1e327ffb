"""One tiny world on every machine: the build's numerics pinned, its weights hashed, and the hash checked.

Training 1,600 steps amplifies any difference in the last bit of a kernel's result, and torch picks its CPU kernels
by the machine: AVX-512 where the CPU has it, else AVX2. benchmarks/world_numerics.py builds small worlds under
each kernel setting and core count this machine offers: the kernels torch's dispatcher picks
(`ATEN_CPU_CAPABILITY`) decide the weights; the core count, MKL's and oneDNN's code paths did not change them there.
So a pinned build (`WorldSpec(pinned=True)`, the default) runs in a child process with the dispatcher
at AVX2 (which every x86-64 CPU of the last decade has), a fixed thread count, and MKL's and oneDNN's paths at AVX2
as well (MKL's conditional numerical reproducibility, `MKL_CBWR`), which costs nothing measurable. On a CPU without
AVX2, or not x86-64 (an ARM Mac), the pins cannot hold, and the build says in one line that its weights differ from
the reference. `MERGEKIT_EVO_WORLD_PINNED=0` (`tiny-world build --unpinned`) builds with this machine's own kernels.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

PINNED = {
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's vectorised kernels: AVX2 even where AVX-512 exists
    "OMP_NUM_THREADS": "2",  # a parallel reduction's order depends on the thread count, not on the cores
    "MKL_NUM_THREADS": "2",
    "MKL_CBWR": "AVX2,STRICT",  # MKL's sgemm on its AVX2 path, bit-reproducible across CPUs that have it
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}
MODELS = ("base", "math_a", "lang_b")
REFERENCE_FILE = Path(__file__).with_name("reference_weights.json")


def weights_hash(world: Path) -> str:
    """sha256 of the three models' safetensors files, in a fixed order: equal hashes, equal worlds."""
    digest = hashlib.sha256()
    for name in MODELS:
        with (Path(world) / "models" / name / "model.safetensors").open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def reference_weights() -> dict[str, str]:
    """World fingerprint -> the weights hash of its reference build, as kept in the repository."""
    return json.loads(REFERENCE_FILE.read_text())["weights"]


def reference_notice(manifest: dict) -> str | None:
    """One line when a build's weights differ from the reference build of the same settings, else None."""
    expected = reference_weights().get(manifest["fingerprint"])
    if expected is None or manifest.get("weights") == expected:
        return None
    return (
        f"note: this tiny world's weights differ from the reference build of the same settings "
        f"(sha256 {str(manifest.get('weights'))[:12]}, reference {expected[:12]}): this CPU's kernels train it "
        "differently, so the figures in docs/tiny-world.md, measured on the reference, will not match yours digit for digit"
    )
