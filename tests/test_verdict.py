"""The verdict line: the chosen merge against the best parent and the best plain merge, significant or not."""

from __future__ import annotations

import numpy as np

from mergekit_evo.rank.significance import compare
from mergekit_evo.rank.verdict import verdict_line


def _run(chosen: np.ndarray, parents: dict[str, np.ndarray], plain: dict[str, np.ndarray]):
    """What a run folder keeps, from designed held-out 0/1 scores on one task."""
    inputs = {f"/models/{name}": {"heldout": {"math_b": float(s.mean())}} for name, s in parents.items()}
    baselines = {name: {"heldout": {"math_b": float(s.mean())}} for name, s in plain.items()}
    comparisons = {f"{name} (input)": {"math_b": compare(chosen, s).to_json()} for name, s in parents.items()}
    comparisons.update({f"{name} (baseline)": {"math_b": compare(chosen, s).to_json()} for name, s in plain.items()})
    best = {"heldout": {"math_b": float(chosen.mean())}, "comparisons": comparisons}
    return best, inputs, baselines


def _scores(right: int, start: int = 0, n: int = 256) -> np.ndarray:
    """`right` items right in a row from item `start`: two such sets differ on the items only one of them covers."""
    return ((np.arange(n) >= start) & (np.arange(n) < start + right)).astype(float)


def test_a_clear_gain_is_called_significant_against_the_best_of_each_group():
    best, inputs, baselines = _run(
        _scores(160), {"math_a": _scores(70), "lang_b": _scores(60)}, {"ties": _scores(100), "linear": _scores(90)}
    )
    line = verdict_line(best, inputs, baselines)
    assert line is not None and "\n" not in line
    assert line.startswith("Verdict: held-out math_b: the evolved merge 0.625;")
    assert "+0.352 [" in line and "over the best parent, math_a (0.273), McNemar p < 0.0001: significant" in line
    assert "over the best plain merge, ties (0.391)" in line and line.endswith(": significant.")


def test_a_small_gain_is_not_significant_and_a_loss_is_no_gain():
    # 10 items only the chosen merge gets right, 4 only the plain merge: McNemar p = 0.18
    best, inputs, baselines = _run(_scores(110), {"math_a": _scores(70)}, {"ties": _scores(104, start=10)})
    line = verdict_line(best, inputs, baselines)
    assert "math_a (0.273), McNemar p < 0.0001: significant" in line
    assert (
        "+0.023 [" in line and "over the best plain merge, ties (0.406), McNemar p = 0.1796: not significant." in line
    )
    best, inputs, baselines = _run(_scores(100), {"math_a": _scores(70)}, {"ties": _scores(104)})
    line = verdict_line(best, inputs, baselines)
    assert "-0.016 [" in line and line.endswith("over the best plain merge, ties (0.406), McNemar p = 0.1250: no gain.")


def test_a_run_without_held_out_comparisons_has_no_verdict():
    assert verdict_line(None, {}, {}) is None
    assert verdict_line({"heldout": {"math_b": 0.5}, "comparisons": {}}, {}, {}) is None
