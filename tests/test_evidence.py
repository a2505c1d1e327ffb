"""Evidence at the end of every run: plain-merge baselines, a validation choice, paired significance, a warning."""

from __future__ import annotations

import html
import json

import numpy as np
import pytest
import yaml

from helpers import cli, item_count, registered
from mergekit_evo.config import parse_config
from mergekit_evo.demo.configs import two_skill_config
from mergekit_evo.demo.tiny_world import task_file
from mergekit_evo.estimate.estimators import Estimator
from mergekit_evo.plugin.errors import UserError
from mergekit_evo.plugin.hookspecs import hookimpl
from mergekit_evo.rank.significance import compare, mcnemar_exact, paired_bootstrap
from mergekit_evo.run.evolution import Evolution
from mergekit_evo.run.optimizers import Optimizer
from mergekit_evo.store.runs import RunStore
from mergekit_evo.testing import faked

# ------------------------------------------------------------------------------------------ the statistics


@pytest.mark.parametrize(
    "a_only, b_only, expected",
    [
        (8, 2, 2 * (1 + 10 + 45) / 2**10),  # 2 * P(X <= 2), X ~ Binomial(10, 1/2)
        (5, 0, 2 / 2**5),
        (3, 3, 1.0),  # the doubled tail passes 1 and is capped
        (0, 0, 1.0),  # no discordant item: nothing to tell them apart
    ],
)
def test_exact_mcnemar_matches_the_binomial_tail_by_hand(a_only, b_only, expected):
    both, neither = 7, 4  # concordant items change nothing
    a = np.array([1] * a_only + [0] * b_only + [1] * both + [0] * neither)
    b = np.array([0] * a_only + [1] * b_only + [1] * both + [0] * neither)
    p, got_a, got_b = mcnemar_exact(a, b)
    assert (got_a, got_b) == (a_only, b_only)
    assert p == pytest.approx(expected)


def test_the_paired_bootstrap_of_two_items_has_the_hand_computed_interval():
    # differences 0 and 1: resampled means are 0, 0.5 and 1 with probabilities 1/4, 1/2, 1/4
    mean, low, high = paired_bootstrap(np.array([0.0, 1.0]), np.array([0.0, 0.0]))
    assert (mean, low, high) == (0.5, 0.0, 1.0)
    mean, low, high = paired_bootstrap(np.ones(50), np.zeros(50))
    assert (mean, low, high) == (1.0, 1.0, 1.0)


def test_the_bootstrap_is_paired_so_a_constant_lead_is_certain_even_when_scores_vary_widely():
    rng = np.random.default_rng(0)
    b = rng.uniform(0, 1, 200)
    comparison = compare(b + 0.01, b)
    assert comparison.low == pytest.approx(0.01) and comparison.high == pytest.approx(0.01)
    assert comparison.p_mcnemar is None  # graded scores: the bootstrap alone


# ------------------------------------------------------------------------------------------ whole runs


def _config(world, **changes):
    data = two_skill_config(world, max_evaluations=8, population=4)
    data.update(changes)
    return parse_config(data, world)


@pytest.fixture(scope="module")
def plain_run(tiny_world, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("evidence") / "run"
    return Evolution.start(_config(tiny_world), run_dir, log=lambda _: None).run(progress=False)


def test_every_run_scores_the_start_point_and_plain_merges_beside_the_parents(plain_run, tiny_world):
    saved = json.loads((plain_run.run_dir / RunStore.BASELINES).read_text())
    held_out = item_count(tiny_world, "math_a", "test")
    assert list(saved) == ["start point", "task_arithmetic (weight 1)", "linear (equal weights)"]
    for entry in saved.values():
        assert set(entry["heldout"]) == {"math_a", "facts_b"} and len(entry["items"]["heldout"]["math_a"]) == held_out
    linear = yaml.safe_load(saved["linear (equal weights)"]["recipe"])
    assert linear["merge_method"] == "linear" and "base_model" not in linear
    report = (plain_run.run_dir / RunStore.REPORT).read_text()
    assert "| task_arithmetic (weight 1) (baseline) |" in report and "| start point (baseline) |" in report


def test_the_report_and_best_heldout_hold_paired_comparisons_against_every_parent_and_baseline(plain_run, tiny_world):
    saved = json.loads((plain_run.run_dir / RunStore.BEST_HELDOUT).read_text())
    assert saved["index"] == plain_run.best.index
    against = set(saved["comparisons"])
    assert {"math_a (input)", "lang_b (input)", "base (input)", "linear (equal weights) (baseline)"} <= against
    c = saved["comparisons"]["lang_b (input)"]["math_a"]
    mine = np.array(saved["items"]["heldout"]["math_a"])
    lang_b = next(ref for ref in plain_run.inputs if ref.endswith("lang_b"))
    theirs = np.array(plain_run.inputs[lang_b]["items"]["heldout"]["math_a"])
    assert c["difference"] == pytest.approx(float(np.mean(mine - theirs)))
    assert c["low"] <= c["difference"] <= c["high"] and 0 <= c["p_mcnemar"] <= 1
    report = (plain_run.run_dir / RunStore.REPORT).read_text()
    assert "95% interval" in report and "McNemar p" in report and f"| lang_b (input) | math_a | {len(mine)} |" in report


def test_user_baselines_replace_the_defaults_and_a_broken_one_is_refused_before_the_run(tiny_world, tmp_path):
    recipe = {
        "merge_method": "task_arithmetic",
        "base_model": str(tiny_world / "models" / "base"),
        "models": [{"model": str(tiny_world / "models" / "math_a"), "parameters": {"weight": 0.7}}],
        "dtype": "float32",
    }
    config = _config(tiny_world, baselines=[{"name": "math only", "recipe": recipe}], budget={"max_evaluations": 4})
    result = Evolution.start(config, tmp_path / "run", log=lambda _: None).run(progress=False)
    assert list(result.baselines) == ["math only"]
    broken = _config(tiny_world, baselines=[{"name": "typo", "recipe": {"merge_method": "task_arithmetic"}}])
    with pytest.raises(UserError, match=r"baselines\[0\]\.recipe: not a mergekit recipe"):
        Evolution.start(broken, tmp_path / "other", log=lambda _: None)
    assert not (tmp_path / "other").exists()


def test_when_the_search_winner_loses_on_validation_the_validation_winner_becomes_best_yaml(
    micro_world, fake_plugins, tmp_path
):
    # the designed case, on any world: the estimate flatters the base (candidate 0) past everyone on search, and the
    # fake backend scores the validation items by its designed quality, far higher near task arithmetic
    data = two_skill_config(micro_world, max_evaluations=8, population=8, optimizer="alternating-test")
    data["tasks"] = [
        {
            "name": "skill",
            "items": str(task_file(micro_world, "math_a", "search")),
            "validation_items": str(task_file(micro_world, "facts_b", "search")),
        }
    ]
    data = faked(data)
    data["estimator"] = {"name": "flatters-the-first-test"}
    data["selection"] = {"top_k": 8}
    result = _designed_run(data, micro_world, tmp_path / "run")
    search_best = max(result.records, key=lambda r: (r.fitness, -r.index))
    validation = json.loads((tmp_path / "run" / RunStore.VALIDATION).read_text())
    assert len(validation) == len({r.merge_yaml for r in result.records})
    by_validation = max(validation, key=lambda i: (np.mean(validation[i]["skill"]),))
    assert result.best.index == int(by_validation) != search_best.index
    assert (tmp_path / "run" / RunStore.BEST).read_text() == result.best.merge_yaml
    report = (tmp_path / "run" / RunStore.REPORT).read_text()
    assert f"| {result.best.index} (chosen) |" in report and "skill (validation)" in report


def test_a_validation_share_is_held_back_from_the_search_and_recorded(tiny_world, tmp_path):
    data = two_skill_config(tiny_world, max_evaluations=4, population=4)
    data["tasks"][0]["validation"] = 0.25
    result = Evolution.start(parse_config(data, tiny_world), tmp_path / "run", log=lambda _: None).run(progress=False)
    selection = json.loads((tmp_path / "run" / RunStore.SELECTION).read_text())["math_a"]
    n = item_count(tiny_world, "math_a", "search")
    held = round(0.25 * n)
    assert len(selection["validation_ids"]) == held and len(selection["item_ids"]) == n - held
    assert not set(selection["validation_ids"]) & set(selection["item_ids"])
    assert all(len(r.tasks["math_a"]["scores"]) == n - held for r in result.records)
    assert len(result.best_scores["items"]["validation"]["math_a"]) == held


def test_a_chosen_merge_below_a_parent_on_held_out_items_gets_a_warning_line(tiny_world, tmp_path):
    # the search rewards math_a, but the held-out items ask facts_b, which lang_b knows and these merges do not
    data = two_skill_config(tiny_world, max_evaluations=4, population=4)
    data["tasks"] = [
        {
            "name": "skill",
            "items": str(task_file(tiny_world, "math_a", "search")),
            "test_items": str(task_file(tiny_world, "facts_b", "test")),
        }
    ]
    data["genome"]["parameters"]["weight"] = {"min": 0.0, "max": 0.2}
    result = Evolution.start(parse_config(data, tiny_world), tmp_path / "run", log=lambda _: None).run(progress=False)
    assert result.warning is not None and "below lang_b (input)" in result.warning
    assert f"**{result.warning}**" in (tmp_path / "run" / RunStore.REPORT).read_text()


def test_the_demo_evolves_per_layer_weights_for_math_b_and_reports_it_against_plain_merges(tiny_world, tmp_path):
    result = cli("demo", "--max-evaluations", "8", "--optimizer", "random", "--run-dir", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((tmp_path / "demo" / RunStore.CONFIG).read_text())
    layers = json.loads((tiny_world / "models" / "base" / "config.json").read_text())["num_hidden_layers"]
    assert [t["name"] for t in config["tasks"]] == ["math_b"] and config["tasks"][0]["validation"] == 0.2
    assert config["genome"]["layer_groups"] == layers and config["genome"]["parameters"]["weight"]["max"] == 2.0
    best = yaml.safe_load((tmp_path / "demo" / RunStore.BEST).read_text())
    assert all(len(m["parameters"]["weight"]) == layers for m in best["models"])  # one weight per layer
    report = (tmp_path / "demo" / RunStore.REPORT).read_text()
    assert "**chosen merge**" in result.stdout and "**chosen merge**" in report
    verdict = report.split("\n")[2]  # the report opens with the verdict, right under its title
    assert verdict.startswith("**Verdict: held-out math_b: the evolved merge ") and verdict in result.stdout
    assert "over the best parent" in verdict and "over the best plain merge" in verdict
    page = (tmp_path / "demo" / RunStore.REPORT_HTML).read_text()
    marker = '<script type="application/json" id="state">'
    state = json.loads(page[page.index(marker) + len(marker) : page.index("</script>", page.index(marker))])
    opening = f'<h1>mergekit-evo run demo</h1><p id="verdict"><b>{html.escape(verdict.strip("*"))}</b>'
    assert state["summary"].startswith(opening)
    for row in (
        "| math_a (input) | math_b | 256 |",
        "| task_arithmetic (weight 1) (baseline) | math_b |",
        "math_b (validation)",
        "95% interval",
    ):
        assert row.replace("256", str(item_count(tiny_world, "math_b", "test"))) in report


class Alternating(Optimizer):
    """Designed genomes, each its own: weights near 0 (near the base model) and near 1 (near plain task arithmetic),
    in turn (0, 0.99, 0.02, 0.97, ...)."""

    asked = 0

    def ask(self) -> np.ndarray:
        rows = []
        for member in range(self.population):
            step = 0.01 * (self.asked + member)
            rows.append(np.full(self.dim, step if member % 2 == 0 else 1.0 - step))
        self.asked += self.population
        return np.array(rows)

    def tell(self, xs, fitness) -> None:
        pass


INPUTS = 3  # two_skill_config's input models (the specialists and the base), each estimated before any candidate


class FlattersTheFirst(Estimator):
    """3 random items per candidate, and a designed bias: the first candidate (the base model) past everyone, the
    near-task-arithmetic ones (even calls: a task's estimates are asked once per candidate, in index order) past the
    near-base ones. So the search winner is the first candidate (all weights 0: the base model), and the top 5 hold merges near task arithmetic, which beat
    it on all search items on any world (the specialists' skills are the world's strongest property)."""

    def prepare(self, source):
        self.calls = {task: 0 for task in source.item_ids}

    def select(self, task, n_items):
        return np.sort(self.task_rng(task).choice(n_items, size=3, replace=False))

    def estimate(self, task, indices, scores):
        self.calls[task] += 1
        n = self.calls[task] - INPUTS  # the candidate's index + 1; 0 or less for the inputs, scored first
        return float(np.mean(scores)) + (100.0 if n == 1 else 10.0 if n > 0 and n % 2 == 0 else 0.0)


class DesignedPlugin:
    @hookimpl
    def register_optimizers(self, register):
        register("alternating-test", Alternating)

    @hookimpl
    def register_estimators(self, register):
        register("flatters-the-first-test", FlattersTheFirst)


def _designed_run(data: dict, world, run_dir):
    """A whole run of `data` with the designed optimizer and estimator registered for it."""
    with registered(DesignedPlugin(), "designed-evidence-test"):
        return Evolution.start(parse_config(data, world), run_dir, log=lambda _: None).run(progress=False)


def test_a_cheap_estimate_s_top_k_are_scored_on_all_search_items_and_the_full_winner_becomes_best_yaml(
    tiny_world, tmp_path
):
    data = two_skill_config(tiny_world, max_evaluations=16, population=8, optimizer="alternating-test")
    data["estimator"] = {"name": "flatters-the-first-test"}
    result = _designed_run(data, tiny_world, tmp_path / "run")
    full = json.loads((tmp_path / "run" / RunStore.FULL_SEARCH).read_text())
    assert len(full) == len(result.finalists) == 5
    n = item_count(tiny_world, "math_a", "search")
    assert all(len(scores["math_a"]) == n for scores in full.values())
    for f in result.finalists:  # the full score is the mean over every search item, weighted like the fitness
        means = [np.mean(full[str(f["index"])][t]) for t in ("math_a", "facts_b")]
        assert f["full_fitness"] == pytest.approx(np.mean(means))
    winner = max(result.finalists, key=lambda f: (f["full_fitness"], f["search"], -f["index"]))
    search_best = max(result.records, key=lambda r: (r.fitness, -r.index))
    assert search_best.index == 0 and not any(search_best.genome)  # the designed case: the base model won the search
    assert result.best.index == winner["index"] != search_best.index and min(result.best.genome) > 0.5
    assert (tmp_path / "run" / RunStore.BEST).read_text() == result.best.merge_yaml
    report = (tmp_path / "run" / RunStore.REPORT).read_text()
    assert "scored on all search items" in report and f"| {result.best.index} (chosen) |" in report
    assert "search estimate weighted fitness" in report
