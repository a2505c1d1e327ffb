"""How bytes reach the run directory: append-only JSON-lines logs, atomic replacements, disk errors in one line.

The logs (`candidates.jsonl`, `responses.jsonl`) are the run's memory, so the rules are strict:
- reading never writes: a reader may look at a file a live run is appending to;
- a complete line (one that ends in a newline) is never removed: one that cannot be parsed is reported with its line
  number and skipped, and stays where it is for a person (or a later version) to read;
- the only bytes ever cut are a torn tail (no newline: a write that a kill or a full disk interrupted), and only by
  the one process that holds the run's lock, just before it appends again.

A run folder may come from someone else (a colleague's, a downloaded result), so every file in it is opened through
`open_inside`: no symbolic link below the folder is followed (a link to /etc/passwd named report.md is refused, not
served), and a file where a folder belongs, or a folder where a file belongs, is one line rather than a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from mergekit_evo.plugin.errors import UserError

Row = TypeVar("Row")

# what a parse function raises for a line it cannot read (json's own errors are ValueErrors, a line nested deeper than
# the parser's stack is a RecursionError)
UNREADABLE = (ValueError, TypeError, KeyError, RecursionError)


def _refuse_link(path: Path, error: OSError) -> UserError:
    if os.path.islink(path):
        return UserError(
            f"{path} is a symbolic link; files in a run folder are never followed out of it: "
            "replace the link with the file itself"
        )
    if error.errno == errno.ENOTDIR:
        return UserError(f"{path} is not a folder (something else has its name); move it away")
    if error.errno == errno.EISDIR:
        return UserError(f"{path} is a folder where a file belongs; move it away")
    raise error


def open_inside(root: Path, relative: str, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """A file descriptor for `root/relative`, opened without following a symbolic link anywhere below `root`.

    Each folder on the way is opened with O_NOFOLLOW relative to the one before (no race between a check and the
    open), then the file itself; `root` is taken as the user named it. A link, a file where a folder belongs or a
    folder where a file belongs is a `UserError` naming the path; a missing file is FileNotFoundError as for `open`.
    """
    parts = [p for p in Path(relative).parts if p not in ("", ".")]
    if not parts or ".." in parts or Path(relative).is_absolute():
        raise ValueError(f"{relative!r} is not a path inside the run folder")
    folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        here = Path(root)
        for part in parts[:-1]:
            here = here / part
            try:
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=folder)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _refuse_link(here, e) from None
                raise
            os.close(folder)
            folder = inner
        try:
            fd = os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=folder)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.EISDIR, errno.ENOTDIR):
                raise _refuse_link(Path(root) / relative, e) from None
            raise
    finally:
        os.close(folder)
    kind = os.fstat(fd).st_mode
    if not stat.S_ISREG(kind):  # a FIFO would block a reader, a device would be read or written through
        os.close(fd)
        what = "a folder" if stat.S_ISDIR(kind) else "not a regular file"
        raise UserError(f"{Path(root) / relative} is {what}; a run's files are plain files: move it away")
    return fd


def read_inside(root: Path, relative: str) -> bytes | None:
    """The bytes of `root/relative` (None when it does not exist), read without following a link out of `root`."""
    try:
        fd = open_inside(root, relative)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read()


def read_text_inside(root: Path, relative: str) -> str | None:
    """`read_inside` as UTF-8 text; a file that is not UTF-8 is one line naming it."""
    data = read_inside(root, relative)
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{Path(root) / relative} is not UTF-8 text (byte {e.start}); restore it") from None


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
    numbered: list[tuple[int, Row]] = field(default_factory=list)  # (line number, row), when asked for


def read_jsonl(
    path: Path, parse: Callable[[dict], Row], root: Path | None = None, numbered: bool = False
) -> LogRead[Row]:
    """Read an append-only JSON-lines log through `parse`, without writing to it (opened inside `root` when given:
    a run's logs are)."""
    result: LogRead[Row] = LogRead()
    path = Path(path)
    base = path.parent if root is None else Path(root)
    raw = read_inside(base, str(path.relative_to(base)))
    if raw is None:
        return result
    complete_end = raw.rfind(b"\n") + 1
    result.torn_bytes = len(raw) - complete_end
    for number, line in enumerate(raw[:complete_end].splitlines(), start=1):
        result.lines += 1
        try:
            row = parse(json.loads(line))
            result.rows.append(row)
            if numbered:
                result.numbered.append((number, row))
        except UNREADABLE as e:
            reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            result.bad.append(BadLine(number, reason[:200]))
    return result


def cut_torn_tail(path: Path) -> int:
    """Remove the bytes after the last newline (a write interrupted mid-line); only the run's lock holder calls this.

    Returns how many bytes were cut, so the caller can say so.
    """
    path = Path(path)
    try:
        fd = open_inside(path.parent, path.name, os.O_RDWR)
    except FileNotFoundError:
        return 0
    with os.fdopen(fd, "r+b") as f:
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
    path = Path(path)
    fd = open_inside(path.parent, path.name, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with os.fdopen(fd, "ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_atomically(path: Path, data: bytes, root: Path | None = None) -> None:
    """Write atomically: a reader sees the old file or the new one, never half of either.

    The temporary file is opened, not followed: a link planted under its name (or, with `root`, anywhere between
    `root` and it) is refused, never written through; the rename then replaces a link at `path` itself, not its target.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if path.is_dir() and not path.is_symlink():
        raise UserError(f"{path} is a folder; name a file, or move the folder away")
    try:
        base = tmp.parent if root is None else Path(root)
        fd = open_inside(base, str(tmp.relative_to(base)), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except UserError:
        raise  # a link or folder under the temporary name is the user's to look at, not ours to delete
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
