"""Does the tiny world build to the same weights on every CPU? Small worlds built under each kernel setting torch, MKL
and oneDNN offer on this machine, and under each candidate pinning, compared by the hash of their weights.

A machine is simulated by what decides its numerics: the kernels torch's dispatcher picks (`ATEN_CPU_CAPABILITY`:
avx512 where the CPU has it, avx2, default), the code path MKL's sgemm takes (`MKL_ENABLE_INSTRUCTIONS`), oneDNN's
(`ONEDNN_MAX_CPU_ISA`) and the cores it has (`taskset`). A pinning is what the build would set for itself. If a
pinning gives one hash on every simulated machine, it makes the world the same wherever it is built (on CPUs at
least as capable as the pinned path).

    python benchmarks/world_numerics.py              # the table of the README
    python benchmarks/world_numerics.py --quick      # fewer machines
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def small_world(hidden: int) -> dict[str, int]:
    return dict(
        hidden=hidden, layers=2, base_steps=120, specialist_steps=40, language_steps=60, items_per_skill=32,
        math_search_items=40,
    )  # fmt: skip


from mergekit_evo.demo.tiny_world.build import WorldSpec  # noqa: E402
from mergekit_evo.demo.tiny_world.numerics import PINNED, weights_hash  # noqa: E402

MACHINES = {
    "this CPU (AVX-512), 2 cores": ({}, None),
    "this CPU, 1 core": ({}, "0"),
    "an AVX2 CPU, 2 cores": (
        {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
        None,
    ),
    "an AVX2 CPU, 1 core": (
        {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
        "0",
    ),
}

PINNINGS = {
    "nothing pinned": {},
    "threads: 2": {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"},
    "threads: 2; ATen avx2": {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "ATEN_CPU_CAPABILITY": "avx2"},
    "threads: 2; ATen avx2; MKL CBWR AVX2; oneDNN AVX2": {
        "OMP_NUM_THREADS": "2",
        "MKL_NUM_THREADS": "2",
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_CBWR": "AVX2,STRICT",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    },
}


def build(
    machine: dict[str, str], cores: str | None, pinning: dict[str, str], into: Path, hidden: int
) -> tuple[str, float]:
    # the pinning wins where both set a variable, as it would in the build; the build's own child process is run
    # directly, so that only this environment decides (`tiny-world build` pins its numerics itself)
    env = {name: value for name, value in os.environ.items() if name not in PINNED}
    env.update({**machine, **pinning})
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    spec = WorldSpec(seed=0, **small_world(hidden))
    command = [
        sys.executable,
        "-m",
        "mergekit_evo.demo.tiny_world.build_child",
        str(into),
        str(into),
        spec.model_dump_json(),
    ]
    if cores is not None:
        command = ["taskset", "-c", cores, *command]
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return weights_hash(into)[:12], time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="two machines: this CPU and a simulated AVX2 one")
    parser.add_argument("--hidden", type=int, default=128, help="the models' width (the default world's: 256)")
    args = parser.parse_args(argv)
    machines = dict(list(MACHINES.items())[::2]) if args.quick else MACHINES
    print(
        f"small world {small_world(args.hidden)}; the first 12 hex digits of the sha256 of its three models, and "
        "the build's seconds\n"
    )
    print("| pinning | " + " | ".join(machines) + " | one world? |")
    print("|" + " --- |" * (len(machines) + 2))
    with tempfile.TemporaryDirectory() as scratch:
        for name, pinning in PINNINGS.items():
            cells, hashes = [], set()
            for env, cores in machines.values():
                digest, seconds = build(env, cores, pinning, Path(scratch) / "w", args.hidden)
                hashes.add(digest)
                cells.append(f"{digest} ({seconds:.0f} s)")
            print(f"| {name} | " + " | ".join(cells) + f" | {'yes' if len(hashes) == 1 else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
