"""A task backend for the fault tests: the tiny world's native scoring, slowed down in Ray workers so a test can kill
a worker while it is surely mid-candidate. It marks each score in progress with a file named after its process.

The tests ship it to the workers by value (cloudpickle), as a plugin registered in code would travel.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from mergekit_evo.testing import NativeTask


class SlowNativeTask(NativeTask):
    marks: Path | None = None  # set by the test before the run: where "busy-<pid>" files appear while scoring
    driver: int = -1  # the test's own process, which scores the inputs at full speed
    seconds = 1.5

    def score(self, model, indices):
        if self.marks is None or os.getpid() == self.driver:
            return super().score(model, indices)
        # the call is logged before the busy mark appears, so a worker killed on sight of its mark has logged it
        with (self.marks / "calls").open("a") as f:
            f.write(f"{os.getpid()}\n")
        mark = self.marks / f"busy-{os.getpid()}"
        mark.write_text("")
        try:
            time.sleep(self.seconds)
            return super().score(model, indices)
        finally:
            mark.unlink(missing_ok=True)
