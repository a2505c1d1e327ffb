"""The mergekit adapter: each thing mergekit-evo reads from mergekit, checked against the installed mergekit, and a
mergekit that changed one refused in one line that names it and the tested range."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib
import yaml
from pydantic import ValidationError

from mergekit_evo import mergekit_api
from mergekit_evo.mergekit_api import MERGEKIT_TESTED, MergekitChanged

ROOT = Path(__file__).resolve().parents[1]


def test_the_declared_mergekit_range_is_the_tested_one_and_the_installed_mergekit_is_in_it():
    from importlib.metadata import version

    from packaging.specifiers import SpecifierSet

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"mergekit{MERGEKIT_TESTED}" in dependencies
    assert version("mergekit") in SpecifierSet(MERGEKIT_TESTED)


def test_the_method_registry_names_the_methods_the_product_builds_on():
    names = mergekit_api.method_names()
    assert {"linear", "task_arithmetic", "ties", "dare_ties", "della", "passthrough"} <= set(names)


def test_method_specs_say_what_each_method_needs_and_takes():
    linear, task_arithmetic, ties = (mergekit_api.method(m) for m in ("linear", "task_arithmetic", "ties"))
    assert not linear.needs_base and not linear.takes_base
    assert {p.name: p.per_model for p in linear.parameters}["weight"] is True
    assert task_arithmetic.takes_base and ties.takes_base
    assert {"weight", "density"} <= {p.name for p in ties.parameters if p.per_model}
    assert ties.sparsifies is True and ties.ignored == set()
    assert task_arithmetic.sparsifies is False and "density" in task_arithmetic.ignored  # accepted, unused
    assert mergekit_api.method("passthrough").max_inputs == 1
    assert all(m.min_inputs >= 1 for m in (linear, task_arithmetic, ties))


def test_recipes_are_checked_by_mergekit_s_config_model_and_options_carry_the_seed():
    recipe = {"merge_method": "linear", "models": [{"model": "a", "parameters": {"weight": 1.0}}]}
    assert mergekit_api.merge_configuration(recipe).merge_method == "linear"
    with pytest.raises(ValidationError):
        mergekit_api.merge_configuration({"models": "not a list"})
    options = mergekit_api.merge_options(seed=7, device="cpu")
    assert options.random_seed == 7 and options.device == "cpu" and options.lazy_unpickle


def test_the_planner_s_saves_come_in_the_executor_s_order_each_a_gather_and_a_merge(micro_world):
    import safetensors

    models = micro_world / "models"
    recipe = {
        "merge_method": "task_arithmetic",
        "base_model": str(models / "base"),
        "models": [{"model": str(models / m), "parameters": {"weight": 0.5}} for m in ("math_a", "lang_b")],
        "dtype": "float32",
    }
    config = mergekit_api.merge_configuration(recipe)
    options = mergekit_api.merge_options(seed=0)
    arch_info, out_config = mergekit_api.architecture(config, options)
    assert (
        out_config.num_hidden_layers
        == yaml.safe_load((models / "base" / "config.json").read_text())["num_hidden_layers"]
    )
    saves = mergekit_api.plan_saves(config.model_copy(deep=True), arch_info, options, out_config)
    with safetensors.safe_open(str(models / "base" / "model.safetensors"), "pt") as f:
        names = set(f.keys())
    assert {s.tensor_name for s in saves} == names  # one save per tensor of the model
    order = mergekit_api.execution_order(saves)
    assert sorted(order) == sorted(names)
    assert all(mergekit_api.merge_steps(s) is not None for s in saves)


@pytest.mark.parametrize(
    ("module", "name", "call", "named"),
    [
        ("mergekit.merge_methods", "registered_methods", lambda: mergekit_api.method_names(), "method registry"),
        ("mergekit.merge_methods", "get", lambda: mergekit_api.method("ties"), "merge method 'ties'"),
        ("mergekit.graph", "build_schedule", lambda: mergekit_api.execution_order([]), "scheduler"),
    ],
)
def test_a_mergekit_that_changed_what_is_read_is_refused_in_one_line_naming_it(monkeypatch, module, name, call, named):
    import importlib

    monkeypatch.delattr(importlib.import_module(module), name)
    with pytest.raises(MergekitChanged) as raised:
        call()
    message = str(raised.value)
    assert "\n" not in message and named in message and f"mergekit{MERGEKIT_TESTED}" in message
    assert re.search(r"install a tested version", message)
