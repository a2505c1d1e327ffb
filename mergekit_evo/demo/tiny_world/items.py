"""The world's item sets (search and test splits of every skill, as JSONL) and the lm-eval task YAMLs that read the
very same files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

import mergekit_evo.demo.tiny_world.language as language
from mergekit_evo.demo.tiny_world.spec import WorldSpec
from mergekit_evo.scoring.items import Item

SPLITS = ("search", "test")


def _item(
    skill: str, index: int, question: language.Question, distractors: list[str], rng: np.random.Generator
) -> Item:
    choices = [question.answer, *distractors]
    perm = rng.permutation(len(choices))
    return Item(
        id=f"{skill}-{index:04d}",
        prompt=" ".join(question.prompt),
        choices=tuple(choices[p] for p in perm),
        answer=int(np.where(perm == 0)[0][0]),
        target=question.answer,
    )


def fact_items(skill: str, facts: dict, count: int, rng: np.random.Generator) -> list[Item]:
    """`count` items of a facts skill: distinct questions first, then the same questions with other distractors."""
    questions = language.skill_questions(skill, facts)
    order = rng.permutation(len(questions))
    items = []
    for i in range(count):
        q = questions[order[i % len(questions)]]
        picks = rng.choice(len(q.alternatives), size=min(3, len(q.alternatives)), replace=False)
        items.append(_item(skill, i, q, [q.alternatives[p] for p in picks], rng))
    return items


def math_items(skill: str, order: np.ndarray, rng: np.random.Generator) -> list[Item]:
    """Every arithmetic question once, in `order`: choices are the three operations' results and a near miss."""
    questions = language.skill_questions(skill, {})
    items = []
    for i, index in enumerate(order):
        q = questions[index]
        n_others = len(language.OPERATIONS) - 1  # math_question lists the other operations' results first
        others, near = list(q.alternatives[:n_others]), q.alternatives[n_others:]
        items.append(_item(skill, i, q, [*others, near[int(rng.integers(len(near)))]], rng))
    return items


def skill_splits(spec: WorldSpec, facts: dict) -> dict[str, dict[str, list[Item]]]:
    """Search and test items of every skill. math_a and math_b share one order, so their splits ask the same
    questions (in A and in B) and no held-out math_b question is a search question."""
    order = np.random.default_rng([spec.seed, 99]).permutation(len(language.arithmetic()))
    splits = {}
    for number, skill in enumerate(language.SKILLS):
        rng = np.random.default_rng([spec.seed, number])
        if skill.startswith("math"):
            items, half = math_items(skill, order, rng), spec.math_search_items
        else:
            items = fact_items(skill, facts, spec.items_per_skill, rng)
            half = len(items) // 2
        test = items[half:]
        if skill.startswith("math") and spec.math_test_items is not None:
            test = test[: spec.math_test_items]
        splits[skill] = {"search": items[:half], "test": test}
    return splits


def task_file(world: Path, skill: str, split: str) -> Path:
    return Path(world) / "tasks" / f"{skill}.{split}.jsonl"


def lm_eval_task_name(skill: str, mode: str, split: str) -> str:
    return f"tiny_{skill}_{mode}_{split}"


def write_lm_eval_yamls(world: Path, data_root: Path) -> None:
    """One lm-eval task per skill, mode and split, reading the very same JSONL files as the native backend.

    The YAMLs hold absolute paths under `data_root` (lm-eval resolves `data_files` against the working directory).
    """
    folder = world / "tasks" / "lm_eval"
    folder.mkdir(parents=True, exist_ok=True)
    for skill in language.SKILLS:
        for split in SPLITS:
            common = {
                "dataset_path": "json",
                "dataset_kwargs": {"data_files": {"test": str(task_file(data_root, skill, split))}},
                "test_split": "test",
                "doc_to_text": "{{prompt}}",
            }
            mc = {
                **common,
                "task": lm_eval_task_name(skill, "mc", split),
                "output_type": "multiple_choice",
                "doc_to_choice": "{{choices}}",
                "doc_to_target": "{{answer}}",
                "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
            }
            gen = {
                **common,
                "task": lm_eval_task_name(skill, "gen", split),
                "output_type": "generate_until",
                "doc_to_target": "{{target}}",
                "generation_kwargs": {"until": ["<eos>"], "max_gen_toks": 8, "do_sample": False},
                "filter_list": [
                    {"name": "strip", "filter": [{"function": "remove_whitespace"}, {"function": "take_first"}]}
                ],
                "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
            }
            for task in (mc, gen):
                (folder / f"{task['task']}.yaml").write_text(yaml.safe_dump(task, sort_keys=False))


# ---------------------------------------------------------------------------------------------- training data
