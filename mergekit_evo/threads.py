"""torch's threads on a shared machine: as many as the cores other processes leave free, measured per candidate.

torch's CPU kernels run on OpenMP threads, one per core. An OpenMP thread that waits spins for a while before it
sleeps, and every parallel region waits for its slowest thread, so a thread whose core another process holds (a
second search, a world build, a browser) slows the whole region down: benchmarks/busy_core.py measured a scoring 3x
to 5x slower beside a plain Python loop or a second torch process, and a whole demo was once 20x slower beside one.
Making the threads sleep at once (`OMP_WAIT_POLICY=PASSIVE`) removes that, but costs a third or more on an idle
machine, where the tiny world's many short kernels pay a wake-up each. So the worker instead counts, before each
candidate, the cores the other processes used since the last one (from /proc/stat, less this process's own CPU
time), and gives torch the rest: all of them on an idle machine, fewer beside a busy neighbour, at least one.

`MERGEKIT_EVO_THREADS` overrides it: a number fixes torch's thread count; `torch` leaves torch's own choice
(`OMP_NUM_THREADS` then decides, as usual). Where /proc/stat does not exist (macOS, Windows), torch's choice stays.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

ENV = "MERGEKIT_EVO_THREADS"
MIN_WINDOW = 0.05  # seconds: a shorter span since the last look says too little (/proc/stat counts in 10 ms ticks)

# PyTorch's CPU allocator backs tensors of 2 MB and more with transparent huge pages when this is set. It reads it
# once, at its first allocation, so `import mergekit_evo` sets it, before a program that imports it first (the CLI
# does) imports torch: a merge allocates several model-sized temporaries per candidate, and with 4 KB pages their
# page faults cost a fifth to a quarter of a CPU merge's time (docs/performance.md). A user's own setting wins.
PROCESS_DEFAULTS = {"THP_MEM_ALLOC_ENABLE": "1"}


def apply_process_defaults() -> None:
    """Set each of `PROCESS_DEFAULTS` the environment does not set already, before torch is imported, and refuse a
    bad `MERGEKIT_EVO_THREADS` in one line."""
    for name, value in PROCESS_DEFAULTS.items():
        os.environ.setdefault(name, value)
    _fixed_threads()


def threads_for(others_busy: float, cores: int, most: int) -> int:
    """torch threads to use when other processes keep `others_busy` cores busy out of `cores`: the free ones (a core
    counts as taken from a third of its time on), never more than `most` (torch's own choice), at least one."""
    taken = max(0, math.ceil(others_busy - 1 / 3))
    return max(1, min(most, cores - taken))


@dataclass
class Look:
    wall: float
    busy: float  # seconds of CPU time every process used, all cores together (from /proc/stat)
    own: float  # seconds of CPU time this process used


def look_now() -> Look | None:
    """The machine's CPU counters now, or None where /proc/stat does not exist."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
    busy = (sum(fields[:8]) - idle) / tick  # user nice system idle iowait irq softirq steal; guest is in user
    times = os.times()
    return Look(time.monotonic(), busy, times.user + times.system)


class CoreWatch:
    """Sets torch's thread count to the cores other processes leave free; `fit()` before each candidate."""

    def __init__(self, look: Callable[[], Look | None] | None = None) -> None:
        import torch

        self.most = torch.get_num_threads()  # torch's own choice: OMP_NUM_THREADS, Ray's num_cpus, or the cores
        self.cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.fixed = _fixed_threads()
        self.threads = self.most
        self._look = look or look_now  # the machine's counters; a test hands in designed ones
        self._last = self._look()

    def fit(self) -> int:
        """Measure the other processes' load since the last call and set torch's threads for it; returns them."""
        import torch

        if self.fixed is not None:
            self.threads = self.most if self.fixed == 0 else self.fixed
        else:
            now = self._look()
            if now is None or self._last is None:
                return self.threads
            if now.wall - self._last.wall < MIN_WINDOW:
                time.sleep(MIN_WINDOW)  # the first look, or two candidates in a row: a short sample
                now = self._look() or now
            span = now.wall - self._last.wall
            others = max(0.0, (now.busy - self._last.busy) - (now.own - self._last.own)) / span
            self._last = now
            self.threads = threads_for(others, self.cores, self.most)
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        return self.threads


def _fixed_threads() -> int | None:
    """`MERGEKIT_EVO_THREADS`: None for the measured default, 0 for torch's own choice, else the fixed count."""
    value = os.environ.get(ENV, "auto").strip().lower()
    if value == "auto":
        return None
    if value == "torch":
        return 0
    if value.isdigit() and int(value) > 0:
        return int(value)
    from mergekit_evo.plugin.errors import UserError

    raise UserError(f"{ENV}={value!r}: give `auto` (the default), `torch` (torch's own choice) or a number of threads")
