"""How bytes reach the run directory: append-only JSON-lines logs, atomic replacements, disk errors in one line.

The logs (`candidates.jsonl`, `responses.jsonl`) are the run's memory, so the rules are strict:
- reading never writes: a reader may look at a file a live run is appending to;
- a complete line (one that ends in a newline) is never removed: one that cannot be parsed is reported with its line
  number and skipped, and stays where it is for a person (or a later version) to read;
- the only bytes ever cut are a torn tail (no newline: a write that a kill or a full disk interrupted), and only by
  the one process that holds the run's lock, just before it appends again.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from mergekit_evo.errors import UserError

Row = TypeVar("Row")

# what a parse function raises for a line it cannot read (json's own errors are ValueErrors)
UNREADABLE = (ValueError, TypeError, KeyError)


@dataclass(frozen=True)
class BadLine:
    """A complete line that could not be read: kept in the file, skipped by readers."""

    number: int  # 1-based, as an editor shows it
    reason: str


@dataclass
class LogRead(Generic[Row]):
    """What a JSON-lines log holds: the rows that parsed, the complete lines that did not, and a torn tail's size."""

    rows: list[Row] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)
    lines: int = 0  # complete lines, readable or not
    torn_bytes: int = 0


def read_jsonl(path: Path, parse: Callable[[dict], Row]) -> LogRead[Row]:
    """Read an append-only JSON-lines log through `parse`, without writing to it."""
    result: LogRead[Row] = LogRead()
    if not Path(path).exists():
        return result
    raw = Path(path).read_bytes()
    complete_end = raw.rfind(b"\n") + 1
    result.torn_bytes = len(raw) - complete_end
    for number, line in enumerate(raw[:complete_end].splitlines(), start=1):
        result.lines += 1
        try:
            result.rows.append(parse(json.loads(line)))
        except UNREADABLE as e:
            reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            result.bad.append(BadLine(number, reason[:200]))
    return result


def cut_torn_tail(path: Path) -> int:
    """Remove the bytes after the last newline (a write interrupted mid-line); only the run's lock holder calls this.

    Returns how many bytes were cut, so the caller can say so.
    """
    path = Path(path)
    if not path.exists():
        return 0
    with path.open("r+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        # scan back from the end in blocks for the last newline
        end, block = size, 65536
        while end > 0:
            start = max(0, end - block)
            f.seek(start)
            chunk = f.read(end - start)
            at = chunk.rfind(b"\n")
            if at >= 0:
                keep = start + at + 1
                break
            end = start
        else:
            keep = 0
        if keep < size:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
        return size - keep


def append_jsonl(path: Path, row: dict) -> None:
    """Append one row as one write, flushed and fsynced: once this returns, a kill cannot lose it."""
    data = (json.dumps(row) + "\n").encode()
    with Path(path).open("ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_atomically(path: Path, data: bytes) -> None:
    """Write atomically: a reader sees the old file or the new one, never half of either."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def describe_os_error(error: OSError, path: Path, then: str = "run the command again") -> str | None:
    """One line for a disk error a user can fix (full, read-only, not allowed), or None for any other."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the disk while writing {path}; free some space, then {then}"
    if error.errno == errno.EROFS:
        return f"{path} cannot be written: it is on a read-only file system"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"{path} cannot be written: permission denied"
    return None


@contextlib.contextmanager
def disk_errors(path: Path, then: str = "run the command again") -> Iterator[None]:
    """Turn a disk error a user can fix into a `UserError` naming the path (and `then`, what to do once it is fixed);
    anything else stays a bug, with its traceback."""
    try:
        yield
    except OSError as e:
        message = describe_os_error(e, path, then)
        if message is None:
            raise
        raise UserError(message) from None


def safetensors_tensors(path: Path) -> dict[str, dict]:
    """A safetensors file's tensors, name -> {"dtype", "shape", ...}, from its header alone (the data is not read).

    Raises OSError or ValueError for a file that is not safetensors; callers word the error for their field.
    """
    with Path(path).open("rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    header.pop("__metadata__", None)
    return header
