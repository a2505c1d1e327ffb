"""The final choice, as a pure function of records and the finalists' scores (designed, no model)."""

from __future__ import annotations

import dataclasses

from helpers import designed_record
from mergekit_evo.run.finale import Selection, choose, finalists


def _two_tasks(index: int, a: float, b: float, recipe: str | None = None):
    record = designed_record(index, fitness=(a + b) / 2)
    return dataclasses.replace(
        record,
        tasks={"a": {"estimate": a}, "b": {"estimate": b}},
        merge_yaml=recipe or record.merge_yaml,
    )


def _selection(**changes) -> Selection:
    settings = dict(by="weighted", guard=False, weights={"a": 1.0, "b": 1.0}, top_k=3, cheap=False, validation=True)
    return Selection(**{**settings, **changes})


RECORDS = [
    _two_tasks(0, 0.9, 0.9),  # the search winner
    _two_tasks(1, 0.8, 0.8),
    _two_tasks(2, 0.7, 0.7),
    _two_tasks(3, 0.95, 0.95, recipe="recipe 0\n"),  # the winner's recipe again: one finalist per recipe
    _two_tasks(4, 0.1, 0.1),
]


def test_without_finalists_the_leader_is_the_choice():
    best, table = choose(RECORDS, _selection(validation=False), {})
    assert best.index == 3 and table == []


def test_the_top_k_distinct_recipes_are_the_finalists():
    assert [r.index for r in finalists(RECORDS, _selection())] == [3, 1, 2]


def test_the_best_on_validation_wins_even_against_the_search_winner():
    scores = {
        3: {"validation": {"a": [0, 1], "b": [0, 0]}},  # 0.25
        1: {"validation": {"a": [1, 1], "b": [1, 0]}},  # 0.75
        2: {"validation": {"a": [1, 1], "b": [0, 0]}},  # 0.5
    }
    best, table = choose(RECORDS, _selection(), scores)
    assert best.index == 1
    by_index = {row["index"]: row for row in table}
    # the validation fitness weighs the validation means of each task (search scores fill a task without any)
    assert by_index[1]["validation_fitness"] == 0.75 and by_index[3]["search"] == 0.95


def test_a_cheap_estimate_is_replaced_by_the_full_score_and_ties_go_to_the_earlier_candidate():
    scores = {
        3: {"full_search": {"a": [1, 0], "b": [1, 0]}},  # 0.5: the estimate flattered it
        1: {"full_search": {"a": [1, 1], "b": [1, 0]}},  # 0.75
        2: {"full_search": {"a": [1, 0], "b": [1, 1]}},  # 0.75, later: loses the tie
    }
    best, table = choose(RECORDS, _selection(cheap=True, validation=False), scores)
    assert best.index == 1
    assert {row["index"]: row["full_fitness"] for row in table} == {3: 0.5, 1: 0.75, 2: 0.75}


def test_a_task_rule_judges_by_that_task_alone():
    scores = {
        3: {"validation": {"a": [0, 0], "b": [1, 1]}},
        1: {"validation": {"a": [1, 0], "b": [0, 0]}},
        2: {"validation": {"a": [0, 0], "b": [0, 0]}},
    }
    best, _ = choose(RECORDS, _selection(by="a"), scores)
    assert best.index == 1
