"""What gives a run's records their meaning, written when it starts and checked on every `resume`.

A record's genome means something only under the models, their order, the genome layout, the seed and the items it
was scored on. `config.yaml` is a file a user can edit and models and item files can be swapped on disk, so the run
keeps a fingerprint of all of it (`fingerprint.json`) and `resume` refuses, in one line naming what changed, to add
records of another meaning to the same file.

What may change between starting and resuming: the budget (raise it to extend a run), `best_by`, the merger and its
device, the executor (a run may go on Ray where it started locally), the observers, `scratch_dir`, `write_best_model`, `baselines`, `selection`, a task's `batch_size` and `validation_items`;
none of these changes what a recorded genome or score means (baselines and the final choice are made again at the
end).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mergekit_evo.config import EvolveConfig

FORMAT = 1
# config fields that may change between start and resume (see the module docstring)
MAY_CHANGE = {
    "budget",
    "best_by",
    "merger",
    "executor",
    "observers",
    "scratch_dir",
    "write_best_model",
    "run_dir",
    "baselines",
    "selection",
}


# genome keys added since runs were first fingerprinted: left out while they hold their default, so those runs resume
GENOME_DEFAULTS: dict[str, Any] = {"filters": [], "smooth": True, "dfs": None}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def json_hash(data: Any) -> str:
    """A hash of JSON-able data, independent of key order."""
    return sha256(json.dumps(data, sort_keys=True, default=str).encode())


SAMPLES, SAMPLE_BYTES = 64, 65536  # 4 MiB read per weight file, wherever it is in the file


def model_files_hash(ref: str) -> str | None:
    """A cheap identity of a local model's files: config.json, and each weight file's name, size, safetensors header
    and 64 blocks of 64 KiB spread evenly over its data.

    Two fine-tunes of one base share config, sizes and headers, so the data itself must be looked at; a sample of it
    tells them apart (a fine-tune changes nearly every tensor) while costing a few MiB of reading, not the gigabytes
    of a full hash. None for a model that is not a local folder (a hub id).
    """
    folder = Path(ref)
    if not folder.is_dir():
        return None
    h = hashlib.sha256()
    config = folder / "config.json"
    h.update(config.read_bytes() if config.is_file() else b"")
    for path in sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt")):
        size = path.stat().st_size
        h.update(f"{path.name}:{size}:".encode())
        with path.open("rb") as f:
            if size <= SAMPLES * SAMPLE_BYTES:
                h.update(f.read())
                continue
            for offset in range(0, size - SAMPLE_BYTES + 1, (size - SAMPLE_BYTES) // (SAMPLES - 1)):
                f.seek(offset)
                h.update(f.read(SAMPLE_BYTES))
            if path.suffix == ".safetensors":
                f.seek(0)
                h.update(f.read(8 + min(int.from_bytes(f.read(8), "little"), 100_000_000)))
    return h.hexdigest()


def run_fingerprint(config: EvolveConfig, task_hashes: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """The fingerprint as flat, named entries: `{"seed": 0, "files of models[1] (lang_b)": "ab12...", ...}`.

    `task_hashes` holds each task's item hashes, as its backend's `fingerprint()` gives them.
    """
    data = config.model_dump(mode="json", exclude=MAY_CHANGE)
    entries: dict[str, Any] = {}
    for key, value in data.items():
        if key == "tasks":
            for task in value:
                task.pop("batch_size")  # a resource knob, like the merger's device
                task.pop("validation_items")  # read only at the end, to choose among the recorded candidates
                entries[f"task {task['name']}"] = task
        elif key == "providers" and not value:
            continue  # keys added since a run started must not refuse its resume while they hold their default
        elif key == "genome":
            entries[key] = {k: v for k, v in value.items() if k not in GENOME_DEFAULTS or v != GENOME_DEFAULTS[k]}
        elif key == "estimator" and value.get("audit") is None:
            entries[key] = {k: v for k, v in value.items() if k != "audit"}  # likewise
        else:
            entries[key] = value
    for field, ref in config.labelled_inputs():
        entries[f"files of {field} ({Path(ref).name})"] = model_files_hash(ref)
    for task, hashes in task_hashes.items():
        for what, digest in hashes.items():
            entries[f"{what} of task {task}"] = digest
    return {"format": FORMAT, "entries": entries}


def _flat(value: Any, key: str, out: dict[str, Any]) -> dict[str, Any]:
    """Nested entries as dotted keys (`genome.layer_groups`, `models[1]`), so a change is named where it is."""
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flat(v, f"{key}.{k}" if key else str(k), out)
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            _flat(v, f"{key}[{i}]", out)
    else:
        out[key] = value
    return out


def _short(value: Any) -> str | None:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else None


def changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """What differs between two fingerprints, each a short phrase: `seed (0 -> 7)`, `files of models[1] (lang_b)`."""
    before, after = _flat(saved.get("entries", {}), "", {}), _flat(current.get("entries", {}), "", {})
    out = []
    absent = object()
    for key in list(before) + [k for k in after if k not in before]:
        old, new = before.get(key, absent), after.get(key, absent)
        if old == new:
            continue
        shown = ["absent" if v is absent else _short(v) for v in (old, new)]
        if key.startswith(("files of", "search items", "held-out items")) or None in shown:
            out.append(key)
        else:
            out.append(f"{key} ({shown[0]} -> {shown[1]})")
    return out
