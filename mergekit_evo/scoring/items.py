"""Evaluation items as JSONL: one format for multiple choice and exact-match generation.

A line is `{"id": str, "prompt": str, "choices": [str, ...], "answer": int, "target": str}`. Multiple choice reads
`choices` and `answer` (the index of the right choice); generation reads `target`. A file may carry both, so the
same items serve either mode, and lm-eval task YAMLs can read the very same file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mergekit_evo.plugin.errors import UserError


@dataclass(frozen=True)
class Item:
    id: str
    prompt: str
    choices: tuple[str, ...] = field(default=())
    answer: int | None = None
    target: str | None = None

    def to_json(self) -> dict:
        record = asdict(self)
        record["choices"] = list(self.choices)
        return {k: v for k, v in record.items() if v not in (None, [])}


def write_items(path: Path, items: Iterable[Item]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item.to_json(), ensure_ascii=False) + "\n")


def read_items(path: Path, mode: str) -> list[Item]:
    """Read and check a JSONL item file for `mode` ('mc' or 'gen'); errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"item file {path} does not exist")
    items: list[Item] = []
    seen: set[str] = set()
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise UserError(f"item file {path} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{where}: not valid JSON ({e.msg})") from None
        if not isinstance(record, dict) or "prompt" not in record:
            raise UserError(f"{where}: each line must be an object with at least 'prompt'")
        if not isinstance(record.get("choices", []), list):
            raise UserError(f'{where}: \'choices\' must be a list of strings, e.g. ["4", "5", "6"]')
        if isinstance(record.get("answer"), bool):  # JSON's true is not choice 1
            raise UserError(f"{where}: 'answer' is {str(record['answer']).lower()}; give the right choice's index")
        if mode == "mc" and any(not str(c).strip() for c in record.get("choices", ())):
            raise UserError(f"{where}: a choice is empty; every choice needs text for the model to score")
        item = Item(
            id=str(record.get("id", number - 1)),
            prompt=str(record["prompt"]),
            choices=tuple(str(c) for c in record.get("choices", ())),
            answer=record.get("answer"),
            target=None if record.get("target") is None else str(record["target"]),
        )
        if mode == "mc" and not (
            len(item.choices) >= 2 and isinstance(item.answer, int) and 0 <= item.answer < len(item.choices)
        ):
            raise UserError(
                f"{where}: multiple-choice items need 'choices' (2 or more) and 'answer' (an index into them)"
            )
        if mode == "gen" and item.target is None:
            raise UserError(f"{where}: generation items need 'target' (the exact expected answer)")
        if item.id in seen:
            raise UserError(f"{where}: duplicate item id {item.id!r}")
        seen.add(item.id)
        items.append(item)
    if not items:
        raise UserError(f"item file {path} holds no items")
    return items
