"""`make bench`: every benchmark, one after the other, each printing the table the README's Performance section holds.

python benchmarks/run_all.py            # all (about 55 minutes on 2 CPU cores)
python benchmarks/run_all.py --quick    # small sizes and fewer seeds, a few minutes
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import busy_core  # noqa: E402
import estimator_error  # noqa: E402
import merge_speed  # noqa: E402
import parallel  # noqa: E402
import scoring  # noqa: E402
import views  # noqa: E402
import vs_mergekit_evolve  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    quick = parser.parse_args().quick
    runs = [
        ("merge speed", merge_speed.main, ["--sizes", "10M,100M", "--repeats", "1"] if quick else []),
        (
            "estimator error",
            estimator_error.main,
            ["--anchors", "10,20", "--seeds", "2", "--heldout", "16"] if quick else [],
        ),
        ("parallel scoring", parallel.main, ["--evaluations", "24", "--optimizers", "random"] if quick else []),
        ("scoring", scoring.main, ["--case", "demo"] if quick else []),
        ("busy core", busy_core.main, ["--repeats", "2", "--only", "default"] if quick else []),
        ("vs mergekit-evolve", vs_mergekit_evolve.main, ["--candidates", "3"] if quick else []),
        ("views", views.main, ["--repeats", "2"] if quick else []),
    ]
    for title, run, args in runs:
        print(f"\n## {title}: {' '.join(args) or '(defaults)'}\n", flush=True)
        started = time.perf_counter()
        run(args)
        print(f"\n({title}: {time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
