"""The genome maps points to mergekit configs that mergekit itself runs unchanged."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch
import yaml

from helpers import BIN, tensors
from mergekit_evo.config import parse_config
from mergekit_evo.demo.configs import two_skill_config
from mergekit_evo.merge.base import DiskMerger, merge_to_disk
from mergekit_evo.space.genome import GenomeSpace


def _config(world, **changes):
    data = two_skill_config(world)
    data.update(changes)
    return parse_config(data, world)


def test_gene_names_say_which_layers_model_and_parameter(tiny_world):
    space = GenomeSpace(_config(tiny_world))
    assert space.names == [
        "layers[0:4].math_a.weight",
        "layers[4:8].math_a.weight",
        "layers[0:4].lang_b.weight",
        "layers[4:8].lang_b.weight",
    ]


def test_a_point_becomes_a_gradient_list_within_the_bounds(micro_world):
    space = GenomeSpace(_config(micro_world))
    data = space.to_dict(np.array([0.0, 1.0, 0.5, 0.2]))
    assert data["models"][0]["parameters"]["weight"] == [0.0, 1.0]
    assert data["models"][1]["parameters"]["weight"] == [0.5, 0.2]


def test_an_existing_recipe_is_encoded_as_the_starting_point(micro_world, tmp_path):
    recipe = tmp_path / "start.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "merge_method": "task_arithmetic",
                "base_model": str(micro_world / "models" / "base"),
                "models": [
                    {"model": str(micro_world / "models" / "math_a"), "parameters": {"weight": 0.3}},
                    {"model": str(micro_world / "models" / "lang_b"), "parameters": {"weight": [0.6, 1.2]}},
                ],
            }
        )
    )
    space = GenomeSpace(
        _config(
            micro_world,
            genome={"parameters": {"weight": {"min": 0, "max": 1.5}}, "layer_groups": 2, "initial": str(recipe)},
        )
    )
    values = space.values(space.initial_point())
    assert list(values.values()) == pytest.approx([0.3, 0.3, 0.6, 1.2])


def test_discrete_steps_snap_values_to_the_grid(micro_world):
    space = GenomeSpace(_config(micro_world, genome={"parameters": {"weight": {"min": 0, "max": 1, "step": 0.1}}}))
    assert list(space.values(np.array([0.43, 0.97])).values()) == [0.4, 1.0]


def test_emitted_yaml_through_mergekit_yaml_gives_the_disk_mergers_tensors(micro_world, tmp_path):
    cfg = _config(
        micro_world,
        merge_method="ties",
        genome={
            "parameters": {"weight": {"min": 0, "max": 1.5}, "density": {"min": 0.2, "max": 1.0}},
            "layer_groups": 2,
        },
    )
    space = GenomeSpace(cfg)
    x = np.random.default_rng(3).random(space.dim)
    (tmp_path / "candidate.yaml").write_text(space.to_yaml(x))
    subprocess.run(
        [str(BIN / "mergekit-yaml"), str(tmp_path / "candidate.yaml"), str(tmp_path / "by-mergekit-yaml")],
        check=True,
        capture_output=True,
    )
    with DiskMerger(config=cfg).merged(space.to_merge_config(x)) as loaded:
        ours = {k: v.detach().clone() for k, v in loaded.model.state_dict().items()}
    theirs = tensors(tmp_path / "by-mergekit-yaml")
    assert set(theirs) <= set(ours)
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key


@pytest.mark.parametrize(
    "method, parameters",
    [
        ("linear", {"weight": {"min": 0.1, "max": 1}}),
        ("task_arithmetic", {"weight": {"min": 0, "max": 1.5}}),
        ("ties", {"weight": {"min": 0, "max": 1}, "density": {"min": 0.1, "max": 1}}),
        ("dare_ties", {"weight": {"min": 0, "max": 1}, "density": {"min": 0.1, "max": 1}}),
        ("dare_linear", {"weight": {"min": 0, "max": 1}, "density": {"min": 0.1, "max": 1}}),
        ("breadcrumbs", {"weight": {"min": 0, "max": 1}, "density": {"min": 0.5, "max": 0.9}, "gamma": 0.01}),
        ("della", {"weight": {"min": 0, "max": 1}, "density": {"min": 0.3, "max": 0.9}, "epsilon": 0.1}),
        ("slerp", {"t": {"min": 0, "max": 1}}),
        ("nuslerp", {"weight": {"min": 0.1, "max": 1}}),
        ("karcher", {"max_iter": 5}),
    ],
)
def test_every_supported_method_gives_a_recipe_mergekit_runs(micro_world, tmp_path, method, parameters):
    changes = {"merge_method": method, "genome": {"parameters": parameters, "layer_groups": 2}}
    if method in ("slerp",):
        changes["base_model"] = str(micro_world / "models" / "math_a")
    if method in ("linear", "karcher", "nuslerp"):
        changes["base_model"] = None
    cfg = _config(micro_world, **changes)
    space = GenomeSpace(cfg)
    out = merge_to_disk(space.to_merge_config(np.full(space.dim, 0.6)), tmp_path / "m", seed=0)
    merged = tensors(out)
    assert merged and all(torch.isfinite(t).all() for t in merged.values())
