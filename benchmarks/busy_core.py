"""What a busy core costs a candidate's scoring, and which thread settings remove the cost.

A child process scores the tiny world's math_b search and held-out items (396) with the math_a model, `--repeats`
times, and reports its best and median time; it runs on an idle machine, then beside a busy neighbour, under each
setting:

- default: torch's own choice (one OpenMP thread per core; idle OpenMP threads spin before they sleep);
- OMP_WAIT_POLICY=PASSIVE: the same threads, which sleep as soon as they wait;
- GOMP_SPINCOUNT=1000: the same threads, which spin briefly before they sleep;
- 1 thread: `torch.set_num_threads(1)`;
- mergekit-evo's default (`mergekit_evo.threads.CoreWatch`, as every worker runs it before each candidate): torch's
  threads set to the cores the other processes left free since the last scoring.

Neighbours: `python` (a plain Python loop holding one core) and `torch` (a second torch process scoring in a loop,
itself under the same setting, as two workers or a search beside a world build would be).

    python benchmarks/busy_core.py               # the table of the README's Performance section
    python benchmarks/busy_core.py --repeats 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SETTINGS = {
    "default": {},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "GOMP_SPINCOUNT=1000": {"GOMP_SPINCOUNT": "1000"},
    "1 thread": {"MERGEKIT_EVO_BENCH_THREADS": "1"},
    "mergekit-evo's default": {"MERGEKIT_EVO_BENCH_DEFAULTS": "1"},
}
NEIGHBOURS = ("none", "python", "torch")


def _score(repeats: int) -> None:
    """The child: score the items `repeats` times; print the seconds of each as JSON."""
    import torch

    if os.environ.get("MERGEKIT_EVO_BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["MERGEKIT_EVO_BENCH_THREADS"]))
    from mergekit_evo.demo.tiny_world import ensure_world, task_file
    from mergekit_evo.merge.base import load_model
    from mergekit_evo.scoring.items import read_items
    from mergekit_evo.scoring.native import encode_items, score_encoded

    world = ensure_world(log=lambda _: None)
    loaded = load_model(world / "models" / "math_a")
    items = read_items(task_file(world, "math_b", "search"), "mc") + read_items(
        task_file(world, "math_b", "test"), "mc"
    )
    encoded = encode_items(loaded.tokenizer, items, "mc")
    watch = None
    if os.environ.get("MERGEKIT_EVO_BENCH_DEFAULTS"):
        from mergekit_evo.threads import CoreWatch

        watch = CoreWatch()
    score_encoded(loaded.model, loaded.tokenizer, encoded)  # warm-up
    seconds = []
    for _ in range(repeats):
        if watch is not None:  # as the worker does before each candidate (counted in the time)
            started = time.perf_counter()
            watch.fit()
        else:
            started = time.perf_counter()
        score_encoded(loaded.model, loaded.tokenizer, encoded)
        seconds.append(time.perf_counter() - started)
    print(json.dumps({"seconds": seconds, "threads": torch.get_num_threads()}))


def _spin() -> None:
    while True:
        pass


def _child(kind: str, env: dict[str, str], repeats: int = 0) -> subprocess.Popen:
    flag = {"score": ["--child-score", str(repeats)], "python": ["--child-spin"], "torch": ["--child-score", "100000"]}
    return subprocess.Popen(
        [sys.executable, __file__, *flag[kind]],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def measure(setting: dict[str, str], neighbour: str, repeats: int) -> tuple[float, float, int]:
    other = None if neighbour == "none" else _child(neighbour, setting)
    try:
        if other is not None:
            time.sleep(8 if neighbour == "torch" else 1)  # the torch neighbour loads its model first
        run = _child("score", setting, repeats)
        out, _ = run.communicate(timeout=1800)
    finally:
        if other is not None:
            other.kill()
            other.wait()
    result = json.loads(out.strip().splitlines()[-1])
    return min(result["seconds"]), statistics.median(result["seconds"]), result["threads"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", help="only the settings whose name holds this text")
    parser.add_argument("--child-score", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-spin", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_spin:
        _spin()
    if args.child_score is not None:
        _score(args.child_score)
        return
    print(f"{os.cpu_count()} cores; 396 items (math_b search and held-out) scored by the math_a model\n")
    print("| setting | idle | beside a Python loop | beside a second torch process |")
    print("| --- | ---: | ---: | ---: |")
    for name, setting in SETTINGS.items():
        if args.only and args.only not in name:
            continue
        cells = []
        for neighbour in NEIGHBOURS:
            _, median, threads = measure(setting, neighbour, args.repeats)
            if neighbour == "none":
                idle = median
            ratio = "" if neighbour == "none" else f"{median / idle:.1f}x, "
            cells.append(f"{median:.2f} s ({ratio}{threads} thread{'s' if threads > 1 else ''})")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    print("\nmedian seconds per scoring; in brackets, against the same setting idle, and torch's threads at the end")


if __name__ == "__main__":
    main()
