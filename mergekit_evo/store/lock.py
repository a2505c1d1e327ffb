"""One writer per run directory: an exclusive OS file lock that the kernel drops when its process dies.

Two processes appending to one `candidates.jsonl` would each ask the optimizer for the same generation and record it
twice under reused indices. `flock` is held on an open file, so a `kill -9` releases it with the process: there is no
stale lock to clean up, and no timeout to guess. The lock file holds the holder's pid, for the refusal message.
Readers (`best`, looking at a live run) take no lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from mergekit_evo.plugin.errors import UserError
from mergekit_evo.store.files import disk_errors, open_inside


class RunLock:
    """The exclusive lock on one run directory, held from `acquire` until `release` or the process's end."""

    def __init__(self, run_dir: Path, name: str):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / name
        self._file: IO[bytes] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> None:
        """Take the lock or refuse in one line naming the process that holds it."""
        if self._file is not None:
            return
        with disk_errors(self.path, then="try again"):
            fd = open_inside(self.run_dir, self.path.name, os.O_RDWR | os.O_CREAT)  # never a pid through a link
        f = os.fdopen(fd, "r+b")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = f.read().decode(errors="replace").strip() or "unknown"
            f.close()
            raise UserError(
                f"{self.run_dir} is in use by another mergekit-evo process (pid {holder}); one process writes a run "
                f"at a time: wait for it to end or stop it, then `mergekit-evo resume {self.run_dir}`"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n".encode())
        f.flush()
        self._file = f

    def holder(self) -> str | None:
        """The pid of the process writing the run now, or None; a reader's check: it opens the file read-only, takes
        at most a shared lock for an instant, and writes nothing."""
        try:
            f = os.fdopen(open_inside(self.run_dir, self.path.name), "rb")
        except (OSError, UserError):  # no lock file (no run ever held it), or none a run could have held
            return None
        with f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return f.read().decode(errors="replace").strip() or "unknown"
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            return None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file drops the flock
            self._file = None
