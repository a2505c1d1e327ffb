"""The run directory: every scored candidate, optimizer checkpoints and the results, written so a kill loses nothing.

Layout:
  config.yaml         the validated config (absolute paths): `resume` needs nothing else
  candidates.jsonl    one record per scored candidate, appended, flushed and fsynced as soon as it is scored
  checkpoints/        the optimizer's pickled state before each generation's `ask` (gen-0003.pkl)
  selection.json      the item ids each task is scored on (fixed for the whole run)
  parents.json        the input models' scores on the same items and on the held-out items
  best.yaml           the best candidate as a plain mergekit YAML (`mergekit-yaml best.yaml OUT` runs it)
  report.md           parents against the best merge, on the search and held-out items
  pareto.jsonl        multi-objective runs: the non-dominated candidates, each also as pareto/candidate-NNNN.yaml
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mergekit_evo.config import EvolveConfig, parse_config
from mergekit_evo.errors import UserError


@dataclass(frozen=True)
class CandidateRecord:
    index: int
    generation: int
    member: int
    genome: list[float]
    genes: dict[str, float]
    merge_yaml: str
    seed: int
    status: str  # "ok" or "failed"
    objectives: list[float] | None = None
    fitness: float | None = None
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    cached_from: int | None = None
    device: str = "cpu"  # where mergekit's arithmetic ran: part of a seeded random method's result

    @property
    def ok(self) -> bool:
        return self.status == "ok"


Row = TypeVar("Row")


def read_jsonl(path: Path, parse: Callable[[dict], Row]) -> list[Row]:
    """The rows of an append-only JSON-lines file, each through `parse`.

    A torn last line (a kill mid-write), or a line `parse` cannot read, ends the file: it is cut off there, since it
    was never completely written, so the next append starts on a clean line.
    """
    if not path.exists():
        return []
    raw = path.read_bytes()
    rows, good_bytes = [], 0
    for line in raw.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            rows.append(parse(json.loads(line)))
        except (json.JSONDecodeError, TypeError, KeyError):
            break
        good_bytes += len(line)
    if good_bytes != len(raw):
        with path.open("r+b") as f:
            f.truncate(good_bytes)
    return rows


def append_jsonl(path: Path, row: dict) -> None:
    """Append one row, flushed and fsynced: once this returns, a kill cannot lose it."""
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_atomically(path: Path, data: bytes) -> None:
    """Write atomically: a reader sees the old file or the new one, never half of either."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunStore:
    def __init__(self, path: Path):
        self.path = Path(path)

    # -------------------------------------------------------------------------------- creation and opening

    @classmethod
    def create(cls, path: Path, config: EvolveConfig) -> RunStore:
        store = cls(path)
        if store.candidates_path.exists() and store.candidates_path.stat().st_size > 0:
            raise UserError(
                f"{path} already holds a run; continue it with `mergekit-evo resume {path}` or choose another run_dir"
            )
        (store.path / "checkpoints").mkdir(parents=True, exist_ok=True)
        data = config.model_dump(mode="json", exclude={"run_dir"})
        write_atomically(store.path / "config.yaml", yaml.safe_dump(data, sort_keys=False).encode())
        return store

    @classmethod
    def open(cls, path: Path) -> tuple[RunStore, EvolveConfig]:
        store = cls(path)
        config_path = store.path / "config.yaml"
        if not config_path.is_file():
            raise UserError(f"{path} is not a run directory (no config.yaml); start one with `mergekit-evo run CONFIG`")
        config = parse_config(yaml.safe_load(config_path.read_text()), store.path)
        return store, config.model_copy(update={"run_dir": store.path.resolve()})

    # -------------------------------------------------------------------------------- candidates

    @property
    def candidates_path(self) -> Path:
        return self.path / "candidates.jsonl"

    def records(self) -> list[CandidateRecord]:
        """Every recorded candidate. A torn last line (a kill mid-write) is cut off, since it was never complete."""
        return read_jsonl(self.candidates_path, lambda row: CandidateRecord(**row))

    def append(self, record: CandidateRecord) -> None:
        append_jsonl(self.candidates_path, asdict(record))

    # -------------------------------------------------------------------------------- checkpoints and results

    def checkpoint_path(self, generation: int) -> Path:
        return self.path / "checkpoints" / f"gen-{generation:04d}.pkl"

    def save_checkpoint(self, generation: int, state: dict) -> None:
        write_atomically(self.checkpoint_path(generation), pickle.dumps(state))

    def latest_checkpoint(self) -> tuple[int, dict] | None:
        paths = sorted((self.path / "checkpoints").glob("gen-*.pkl"))
        if not paths:
            return None
        latest = paths[-1]
        return int(latest.stem.split("-")[1]), pickle.loads(latest.read_bytes())

    def read_json(self, name: str) -> Any:
        path = self.path / name
        return json.loads(path.read_text()) if path.exists() else None

    def write_json(self, name: str, data: Any) -> None:
        write_atomically(self.path / name, (json.dumps(data, indent=2) + "\n").encode())

    def write_text(self, name: str, text: str) -> None:
        write_atomically(self.path / name, text.encode())

    def write_lines(self, name: str, rows: list[Any]) -> None:
        """A JSON-lines file, replaced atomically as a whole."""
        write_atomically(self.path / name, "".join(json.dumps(row) + "\n" for row in rows).encode())


def score_by(record: CandidateRecord, by: str = "weighted") -> float:
    """A candidate's score under a best-selection rule: its weighted fitness, or one task's estimate."""
    return record.fitness if by == "weighted" else record.tasks[by]["estimate"]


def best_record(records: list[CandidateRecord], by: str = "weighted") -> CandidateRecord | None:
    """The best scored candidate under the rule `by` ('weighted' or a task name); ties go to the earliest."""
    scored = [r for r in records if r.ok and r.fitness is not None]
    return max(scored, key=lambda r: (score_by(r, by), -r.index)) if scored else None
