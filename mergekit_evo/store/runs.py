"""The run directory: every scored candidate, optimizer checkpoints and the results, written so a kill loses nothing.

Layout (every name is spelled here and nowhere else):
  config.yaml         the validated config (absolute paths): `resume` needs nothing else
  fingerprint.json    what gives the records their meaning (models, genome, seed, items); `resume` checks it
  run.lock            held (flock) by the one process writing the run; holds its pid
  candidates.jsonl    one record per scored candidate, appended, flushed and fsynced as soon as it is scored
  responses.jsonl     whole-item-set scores that estimators learn from (IRT), appended the same way
  estimator/          what such an estimator fitted (NAME.json)
  checkpoints/        JSON, one per generation told (gen-0003.json: generation 3 is the next to ask): the run's
                      elapsed time and what an audited estimator refitted. The optimizer is not stored: it is
                      rebuilt by replaying the records of the generations before through a new, seeded optimizer
                      (run/asking.py), so nothing in a run folder is ever unpickled. gen-*.pkl files of runs written
                      by earlier versions are never opened (their generation is read from the name).
  selection.json      the item ids each task is scored on (fixed for the whole run)
  inputs.json         the input models' scores on the same items and on the held-out items
  best.yaml           the best candidate as a plain mergekit YAML (`mergekit-yaml best.yaml OUT` runs it)
  best_heldout.json   the chosen merge on validation and held-out items, per item, and its paired comparisons
  baselines.json      the plain merges (baselines.py) scored like the parents
  validation.json     the top-k candidates' scores on the validation items, by index
  full_search.json    the top-k candidates' scores on every search item, by index (cheap estimators)
  audit.json          runs with `estimator.audit`: the estimate's error on the audited candidates, and the refits
  report.md           parents and baselines against the chosen merge, with paired intervals and p-values
  report.html         the same with plots, one self-contained file (report_html.py; `mergekit-evo report` rebuilds it)
  pareto.jsonl        multi-objective runs: the non-dominated candidates, each also as pareto/candidate-NNNN.yaml

Guarantees (tested in tests/test_run_store.py and tests/test_run_safety.py): only the process holding `run.lock`
writes; a record, once appended, is never rewritten or removed; a line that cannot be read is reported and skipped,
never deleted; no file is unpickled or executed, and no symbolic link below the folder is followed (files.py).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from mergekit_evo.config import EvolveConfig, load_yaml_text, read_config
from mergekit_evo.plugin.errors import UserError
from mergekit_evo.store.files import (
    BadLine,
    LogRead,
    append_jsonl,
    cut_torn_tail,
    disk_errors,
    read_jsonl,
    read_text_inside,
    write_atomically,
)
from mergekit_evo.store.lock import RunLock

RECORD_FORMAT = 1  # written into each candidate record; readers keep unknown keys out and default missing optional ones
REQUIRED = ("index", "generation", "member", "genome", "merge_yaml", "seed", "status")


@dataclass(frozen=True)
class CandidateRecord:
    index: int
    generation: int
    member: int
    genome: list[float]
    genes: dict[str, float]
    merge_yaml: str
    seed: int
    status: Literal["ok", "failed"]
    objectives: list[float] | None = None
    fitness: float | None = None
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    cached_from: int | None = None
    # runs with `estimator.audit`: the candidate also scored on every search item ({reason, tasks, fitness, items,
    # accepted}), beside the estimate in `tasks`
    audit: dict[str, Any] | None = None
    device: str = "cpu"  # where mergekit's arithmetic ran: part of a seeded random method's result
    worker: str | None = None  # which executor worker scored it (None for a copy of an earlier twin)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_row(self) -> dict:
        return {"format": RECORD_FORMAT, **asdict(self)}

    @classmethod
    def from_row(cls, row: object) -> CandidateRecord:
        """A record from a JSON line of this or any other version: unknown keys are ignored, optional ones defaulted.

        Raises ValueError for a line that is not a record (missing a required key, or a value of the wrong kind).
        """
        if not isinstance(row, dict):
            raise ValueError("not a JSON object")
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in row.items() if k in known}
        data.setdefault("genes", {})
        for key in ("index", "generation", "member", "seed"):
            if not isinstance(data[key], int) or isinstance(data[key], bool) or data[key] < 0:
                raise ValueError(f"{key} is not a whole number")
        if data["status"] not in ("ok", "failed"):
            raise ValueError(f"status {data['status']!r} is neither 'ok' nor 'failed'")
        if not isinstance(data["genome"], list) or not all(isinstance(v, (int, float)) for v in data["genome"]):
            raise ValueError("genome is not a list of numbers")
        if data["status"] == "ok":
            if not isinstance(data.get("fitness"), (int, float)) or not isinstance(data.get("objectives"), list):
                raise ValueError("an ok record needs fitness and objectives")
            if not math.isfinite(data["fitness"]) or not all(
                isinstance(v, (int, float)) and math.isfinite(v) for v in data["objectives"]
            ):
                raise ValueError("its fitness is not a finite number")
            if not isinstance(data.get("tasks"), dict):
                raise ValueError("tasks is not a mapping")
        if data.get("audit") is not None and not isinstance(data["audit"], dict):
            raise ValueError("audit is not a mapping")
        return cls(**data)


class RunStore:
    """The run directory's layout, and the only code that writes it.

    `RunStore(path)` reads. Writing needs the run's lock (`lock()`, or `create`): a second writer is refused in one
    line naming the first one's pid, and a reader never writes, so it may watch a live run.
    """

    CONFIG = "config.yaml"
    FINGERPRINT = "fingerprint.json"
    LOCK = "run.lock"
    CANDIDATES = "candidates.jsonl"
    RESPONSES = "responses.jsonl"
    ESTIMATOR = "estimator"
    CHECKPOINTS = "checkpoints"
    SELECTION = "selection.json"
    INPUTS = "inputs.json"
    BEST = "best.yaml"
    BEST_HELDOUT = "best_heldout.json"
    BASELINES = "baselines.json"
    VALIDATION = "validation.json"
    FULL_SEARCH = "full_search.json"
    AUDIT = "audit.json"
    GENOME = "genome.json"  # each gene as the views draw it (`Space.layout`)
    CALIBRATION = "calibration.json"  # a learning estimator's estimate of each merge it was fit on, and the truth
    BEST_MODEL = "best_model"
    REPORT = "report.md"
    REPORT_HTML = "report.html"
    PARETO = "pareto.jsonl"
    PARETO_DIR = "pareto"
    # the files and folders that make a folder a run (the lock file alone does not: it is left by any attempt)
    PARTS = (CONFIG, FINGERPRINT, CANDIDATES, RESPONSES, CHECKPOINTS, SELECTION, INPUTS, BEST, REPORT)

    def __init__(self, path: Path, log: Callable[[str], None] | None = None):
        self.path = Path(path)
        self.log = log or (lambda message: print(message, file=sys.stderr))
        self._lock = RunLock(self.path, self.LOCK)
        self._reported: set[tuple[str, int]] = set()

    def file(self, name: str) -> Path:
        return self.path / name

    def read_text(self, name: str) -> str | None:
        """A run file's text (None when absent), opened without following a link out of the folder (files.py)."""
        return read_text_inside(self.path, name)

    @property
    def candidates_path(self) -> Path:
        return self.file(self.CANDIDATES)

    @property
    def responses_path(self) -> Path:
        return self.file(self.RESPONSES)

    def resume_hint(self) -> str:
        return f"`mergekit-evo resume {self.path}` continues the run"

    def parts(self) -> list[str]:
        """The parts of a run this folder holds (empty for a new or unrelated folder)."""
        return [name for name in self.PARTS if os.path.lexists(self.file(name))]

    # -------------------------------------------------------------------------------- creation, opening, locking

    @classmethod
    def create(
        cls, path: Path, config: EvolveConfig, fingerprint: dict, log: Callable[[str], None] | None = None
    ) -> RunStore:
        """A new run in `path` (created if needed), locked; refused if the folder already holds any part of a run."""
        path = Path(path)
        store = cls(path, log)
        store.check_new()  # before the lock, so a refused folder is left untouched
        with disk_errors(path, then="try again"):
            path.mkdir(parents=True, exist_ok=True)
        store.lock()
        try:
            store._refuse_a_run_here()  # again under the lock: another `run` may have started in between
        except UserError:
            store.unlock()
            raise
        store.write_json(cls.FINGERPRINT, fingerprint)
        data = config.model_dump(mode="json", exclude={"run_dir"})
        store.write_text(cls.CONFIG, yaml.safe_dump(data, sort_keys=False))
        store._mkdir(cls.CHECKPOINTS)
        return store

    def check_new(self) -> None:
        """Refuse a run directory that is a file or already holds (part of) a run: cheap, so callers check it first."""
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"run directory {self.path} is a file; name a folder (new or empty) for the run")
        self._refuse_a_run_here()

    def _refuse_a_run_here(self) -> None:
        parts = self.parts()
        if parts:
            if self.file(self.LOCK).exists():
                self.check_not_in_use()  # a live run: say who holds it rather than to resume it
            held = parts[0] + (f" and {len(parts) - 1} more" if len(parts) > 1 else "")
            raise UserError(
                f"{self.path} already holds a run ({held}); continue it with "
                f"`mergekit-evo resume {self.path}`, or give `run` a new run directory"
            )

    @classmethod
    def open(cls, path: Path, log: Callable[[str], None] | None = None) -> tuple[RunStore, EvolveConfig]:
        """An existing run and its config, for reading (`lock()` it to write): the config's schema only; a writer
        checks the models and method itself (`config.check_config`)."""
        path = Path(path)
        store = cls(path, log)
        config_path = store.file(cls.CONFIG)
        if not os.path.lexists(config_path) or not path.is_dir():
            what = "does not exist" if not path.exists() else "is a file" if not path.is_dir() else "has no config.yaml"
            raise UserError(f"{path} is not a run directory ({what}); start a run with `mergekit-evo run CONFIG`")
        text = store.read_text(cls.CONFIG)
        assert text is not None
        data = load_yaml_text(text, config_path)
        config = read_config(data, store.path)
        return store, config.model_copy(update={"run_dir": store.path.resolve()})

    def lock(self, repair: bool = True) -> None:
        """Become the run's one writer; a torn tail left by an earlier writer's kill is cut from each log, unless
        `repair` is False (a view that only writes report.html leaves the logs as they are)."""
        self._lock.acquire()
        if not repair:
            return
        for path in (self.candidates_path, self.responses_path):
            with disk_errors(path, then=self.resume_hint()):
                cut = cut_torn_tail(path)
            if cut:
                self.log(f"{path.name}: cut {cut} bytes of a line left incomplete by an interrupted write")

    def unlock(self) -> None:
        self._lock.release()

    def writer(self) -> str | None:
        """The pid of the process writing this run now (None when none is): read without writing anything."""
        return None if self._lock.held else self._lock.holder()

    def check_not_in_use(self) -> None:
        """Refuse, as `lock` would, when another process writes this run (before deleting or replacing it)."""
        if self.path.is_dir() and not self._lock.held:
            self._lock.acquire()
            self._lock.release()

    def writing(self, path: Path):
        """The context every write to the run goes through: the lock must be held, and a disk error a user can fix is
        one line naming the path and that `resume` continues once it is fixed."""
        if not self._lock.held:
            raise RuntimeError(f"{self.path}: written without holding its lock")  # a bug, not a user's mistake
        return disk_errors(path, then=self.resume_hint())

    def _mkdir(self, name: str) -> Path:
        folder = self.file(name)
        if folder.is_symlink() or (os.path.lexists(folder) and not folder.is_dir()):
            what = "a symbolic link" if folder.is_symlink() else "a file"
            raise UserError(f"{folder} is {what} where the run keeps a folder; move it away, then {self.resume_hint()}")
        with self.writing(folder):
            folder.mkdir(parents=True, exist_ok=True)
        return folder

    # -------------------------------------------------------------------------------- append-only logs

    def read_log(self, path: Path, parse: Callable[[dict], Any]) -> LogRead:
        """A log's rows; each unreadable line is reported once per store, with its number, and skipped, never removed."""
        result = read_jsonl(path, parse, root=self.path)
        for bad in result.bad:
            self._report(path, bad)
        return result

    def _report(self, path: Path, bad: BadLine) -> None:
        if (path.name, bad.number) not in self._reported:
            self._reported.add((path.name, bad.number))
            self.log(
                f"{path.name}:{bad.number}: skipped a line that cannot be read ({bad.reason}); it stays in the file"
            )

    def read_records(self) -> LogRead[CandidateRecord]:
        """The candidate log; a line repeating an earlier record's index (a copied or doubled line) is reported and
        skipped like an unreadable one: the first record of an index is the one that counts."""
        result = read_jsonl(self.candidates_path, CandidateRecord.from_row, root=self.path, numbered=True)
        seen: dict[int, int] = {}
        kept = []
        for number, record in result.numbered:
            if record.index in seen:
                result.bad.append(BadLine(number, f"index {record.index} repeats line {seen[record.index]}"))
                continue
            seen[record.index] = number
            kept.append(record)
        result.rows = kept
        result.bad.sort(key=lambda bad: bad.number)
        for bad in result.bad:
            self._report(self.candidates_path, bad)
        return result

    def records(self) -> list[CandidateRecord]:
        """Every readable candidate record, in the order they were recorded."""
        return self.read_records().rows

    def next_index(self, read: LogRead[CandidateRecord] | None = None) -> int:
        """An index no record has: past every readable record's, and past the count of lines, unreadable ones included.
        `read` is the log as the caller already read it (read again when not given)."""
        read = read or self.read_records()
        return max([read.lines, *(r.index + 1 for r in read.rows)])

    def append(self, record: CandidateRecord) -> None:
        with self.writing(self.candidates_path):
            append_jsonl(self.candidates_path, record.to_row())

    def append_response(self, row: dict) -> None:
        with self.writing(self.responses_path):
            append_jsonl(self.responses_path, row)

    # -------------------------------------------------------------------------------- checkpoints

    def checkpoint_path(self, generation: int) -> Path:
        return self.file(self.CHECKPOINTS) / f"gen-{generation:04d}.json"

    def save_checkpoint(self, generation: int, state: dict) -> None:
        """What a resume needs besides the records, as JSON: `state` holds plain data only (see `latest_checkpoint`)."""
        self._mkdir(self.CHECKPOINTS)
        self.write_text(f"{self.CHECKPOINTS}/{self.checkpoint_path(generation).name}", json.dumps(state))

    def checkpoint_generations(self) -> tuple[list[int], bool]:
        """The generations with a checkpoint, newest first, and whether they are a legacy run's: gen-NNNN.json, or,
        in a run of an earlier version that has none, the names (never the contents) of its gen-NNNN.pkl files."""
        folder = self.file(self.CHECKPOINTS)
        if folder.is_symlink() or not folder.is_dir():
            return [], False
        found: dict[str, set[int]] = {"json": set(), "pkl": set()}
        for path in folder.iterdir():
            stem, _, suffix = path.name.partition(".")
            if suffix in found and stem.startswith("gen-") and stem[4:].isdigit():
                found[suffix].add(int(stem[4:]))
        legacy = not found["json"]
        return sorted(found["pkl" if legacy else "json"], reverse=True), legacy

    def latest_checkpoint(self) -> tuple[int, dict] | None:
        """The newest checkpoint that can be read, as (generation, state); a damaged one is reported and the one
        before it used. A generation known only from an earlier version's pickle gives an empty state: the pickle is
        never opened, and the loop rebuilds the optimizer from the records either way.

        Going back one generation costs nothing recorded: the loop asks that generation again, finds its members'
        records and scores only those that have none.
        """
        generations, legacy = self.checkpoint_generations()
        if legacy and generations:
            return generations[0], {"legacy": True}
        for generation in generations:
            name = f"{self.CHECKPOINTS}/gen-{generation:04d}.json"
            try:
                state = json.loads(self.read_text(name) or "")
                if not isinstance(state, dict):
                    raise ValueError("not a JSON object")
                return generation, state
            except (ValueError, RecursionError, UserError) as e:
                self.log(
                    f"checkpoint gen-{generation:04d}.json cannot be read ({type(e).__name__}); using the one before it"
                )
        return None

    # -------------------------------------------------------------------------------- whole files

    def read_json(self, name: str) -> Any:
        path = self.file(name)
        text = self.read_text(name)
        if text is None:
            return None
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            raise UserError(f"{path} is not valid JSON; restore it, or move it away to have it rebuilt") from None

    def write_json(self, name: str, data: Any) -> None:
        self.write_text(name, json.dumps(data, indent=2) + "\n")

    def write_text(self, name: str, text: str) -> None:
        path = self.file(name)
        if "/" in name:
            self._mkdir(name.rsplit("/", 1)[0])
        with self.writing(path):
            write_atomically(path, text.encode(), root=self.path)

    def write_lines(self, name: str, rows: list[Any]) -> None:
        """A JSON-lines file, replaced atomically as a whole."""
        self.write_text(name, "".join(json.dumps(row) + "\n" for row in rows))

    def write_pareto(self, recipes: dict[str, str], rows: list[dict]) -> None:
        """The Pareto front: each recipe as `pareto/NAME` (recipes no longer on the front removed), and `pareto.jsonl`."""
        folder = self._mkdir(self.PARETO_DIR)
        with self.writing(folder):
            for stale in folder.glob("*.yaml"):
                if stale.name not in recipes:
                    stale.unlink()
        for name, text in recipes.items():
            self.write_text(f"{self.PARETO_DIR}/{name}", text)
        self.write_lines(self.PARETO, rows)

    def estimator_state(self, name: str) -> Any:
        return self.read_json(f"{self.ESTIMATOR}/{name}.json")

    def save_estimator_state(self, name: str, data: Any) -> None:
        self.write_text(f"{self.ESTIMATOR}/{name}.json", json.dumps(data))
