"""The resident merger gives mergekit-yaml's tensors without touching the disk, and plans its memory first.

The comparisons with mergekit run on the CPU; `MERGEKIT_EVO_TEST_DEVICE=cuda` runs both sides on a GPU instead
(benchmarks/device/gpu_check.sh does, on a lent GPU machine).
"""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
import torch

from helpers import BIN, cli, tensors, write_config
from mergekit_evo.config import parse_config
from mergekit_evo.demo.configs import two_skill_config
from mergekit_evo.merge.base import merge_to_disk
from mergekit_evo.merge.memory import plan_memory
from mergekit_evo.merge.resident import ResidentMerger
from mergekit_evo.plugin.errors import UserError
from mergekit_evo.run.evolution import Evolution
from mergekit_evo.space.genome import GenomeSpace
from mergekit_evo.store.runs import RunStore

DEVICE = os.environ.get("MERGEKIT_EVO_TEST_DEVICE", "cpu")

METHODS = [
    ("linear", {"weight": {"min": 0.1, "max": 1}}, None),
    ("task_arithmetic", {"weight": {"min": 0, "max": 1.5}}, "base"),
    ("ties", {"weight": {"min": 0, "max": 1}, "density": {"min": 0.1, "max": 1}}, "base"),
    ("dare_ties", {"weight": {"min": 0, "max": 1}, "density": {"min": 0.1, "max": 1}}, "base"),
    ("dare_linear", {"weight": {"min": 0, "max": 1}, "density": {"min": 0.1, "max": 1}}, "base"),
    ("breadcrumbs", {"weight": {"min": 0, "max": 1}, "density": {"min": 0.5, "max": 0.9}, "gamma": 0.01}, "base"),
    ("della", {"weight": {"min": 0, "max": 1}, "density": {"min": 0.3, "max": 0.9}, "epsilon": 0.1}, "base"),
    ("slerp", {"t": {"min": 0, "max": 1}}, "math_a"),
    ("nuslerp", {"weight": {"min": 0.1, "max": 1}}, None),
]


def _config(world, method="task_arithmetic", parameters=None, base="base", layer_groups=2, **changes):
    data = two_skill_config(world)
    data["merge_method"] = method
    data["genome"] = {"parameters": parameters or {"weight": {"min": 0, "max": 1}}, "layer_groups": layer_groups}
    data["base_model"] = str(world / "models" / base) if base else None
    data["merger"] = {"name": "resident", "options": {"device": DEVICE}}
    data.update(changes)
    return parse_config(data, world)


def _by_mergekit_yaml(space, x, seed, out):
    (out.parent / f"{out.name}.yaml").write_text(space.to_yaml(x))
    subprocess.run(
        [
            str(BIN / "mergekit-yaml"),
            str(out.parent / f"{out.name}.yaml"),
            str(out),
            "--random-seed",
            str(seed),
            "--device",
            DEVICE,
        ],
        check=True,
        capture_output=True,
    )
    return tensors(out)


def _by_run_merge(space, x, seed, out):
    """mergekit's run_merge in this process: what mergekit-yaml runs, without a 5-second interpreter start."""
    return tensors(merge_to_disk(space.to_merge_config(x), out, seed, DEVICE))


# The seeded random methods are compared with the mergekit-yaml command itself; the others with run_merge.
THROUGH_CLI = {"dare_ties", "della"}


def _assert_same_tensors(model, expected):
    ours = model.state_dict()
    assert set(expected) <= set(ours)
    for name, value in expected.items():
        assert torch.equal(ours[name].cpu(), value), name


@pytest.mark.parametrize(("method", "parameters", "base"), METHODS, ids=[m[0] for m in METHODS])
def test_resident_tensors_equal_mergekit_yaml_on_the_emitted_recipe(tiny_world, tmp_path, method, parameters, base):
    cfg = _config(tiny_world, method, parameters, base, layer_groups="per_layer")
    space = GenomeSpace(cfg)
    merger = ResidentMerger(config=cfg)
    seeds = (11, 12) if method == "dare_ties" else (11,)  # a second candidate reuses the model and the sources
    reference = _by_mergekit_yaml if method in THROUGH_CLI else _by_run_merge
    for i, seed in enumerate(seeds):
        x = np.random.default_rng(i).random(space.dim)
        with merger.merged(space.to_merge_config(x), seed=seed) as loaded:
            _assert_same_tensors(loaded.model, reference(space, x, seed, tmp_path / f"m{i}"))
            assert loaded.path is None and loaded.input_ref is None


def test_gradient_lists_are_interpolated_across_layers_as_mergekit_does(tiny_world, tmp_path):
    cfg = _config(tiny_world, "task_arithmetic", {"weight": {"min": 0, "max": 1}}, layer_groups=3)
    space = GenomeSpace(cfg)
    x = np.array([0.0, 1.0, 0.2, 0.9, 0.1, 0.5])
    with ResidentMerger(config=cfg).merged(space.to_merge_config(x), seed=0) as loaded:
        _assert_same_tensors(loaded.model, _by_run_merge(space, x, 0, tmp_path / "m"))


def test_a_random_method_depends_on_the_seed_and_only_on_it(tiny_world):
    cfg = _config(tiny_world, "dare_ties", {"weight": {"min": 0, "max": 1}, "density": {"min": 0.1, "max": 1}})
    space = GenomeSpace(cfg)
    config = space.to_merge_config(np.full(space.dim, 0.5))
    merger = ResidentMerger(config=cfg)

    def weights(seed):
        with merger.merged(config, seed=seed) as loaded:
            return {k: v.clone() for k, v in loaded.model.state_dict().items()}

    first, other, again = weights(1), weights(2), weights(1)
    name = "model.layers.0.mlp.down_proj.weight"
    assert torch.equal(first[name], again[name])
    assert not torch.equal(first[name], other[name])


def test_the_memory_plan_counts_sources_output_and_working_space(tiny_world):
    refs = [str(tiny_world / "models" / m) for m in ("math_a", "lang_b", "base")]
    plan = plan_memory(refs, "float32", "cpu", None)
    one_model = (tiny_world / "models" / "base" / "model.safetensors").stat().st_size
    assert plan.sources == pytest.approx(3 * one_model, rel=0.01)
    assert plan.output == pytest.approx(one_model, rel=0.01)
    assert 0 < plan.working < plan.sources
    half = plan_memory(refs, "bfloat16", "cpu", None)
    assert half.sources == pytest.approx(plan.sources / 2, rel=0.01)


def test_a_plan_that_cannot_fit_is_refused_in_one_line(tiny_world, tmp_path):
    path = write_config(
        tiny_world, tmp_path, merger={"name": "resident", "options": {"max_memory": "1MB", "fallback": "error"}}
    )
    result = cli("run", str(path), "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "the resident merger needs" in lines[0] and "1.0 MB available (merger.options.max_memory)" in lines[0]
    assert "merger: disk" in lines[0]


def test_a_plan_that_cannot_fit_falls_back_to_disk_and_says_so(tiny_world, tmp_path):
    cfg = _config(tiny_world, merger={"name": "resident", "options": {"max_memory": "1MB"}})
    logged = []
    evolution = Evolution.start(cfg, tmp_path / "run", log=logged.append)
    assert "merging on disk instead" in evolution.merger.describe()
    space = evolution.genome
    with evolution.merger.merged(space.to_merge_config(np.full(space.dim, 0.5))) as loaded:
        assert loaded.path is not None  # a scratch folder: the disk merger did the work


def test_bad_merger_options_name_the_option(tiny_world):
    with pytest.raises(
        UserError, match=r"merger.options.max_mem: unknown option; valid options: device, max_memory, fallback"
    ):
        ResidentMerger(config=_config(tiny_world, merger={"name": "resident", "options": {"max_mem": "1GB"}}))
    with pytest.raises(UserError, match=r"merger.options.max_memory"):
        ResidentMerger(config=_config(tiny_world, merger={"name": "resident", "options": {"max_memory": "lots"}}))


def test_resident_and_disk_runs_give_the_same_fitness_for_the_same_candidates(tiny_world, tmp_path):
    results = {}
    for merger in ("resident", "disk"):
        data = two_skill_config(tiny_world, max_evaluations=4, population=4)
        data.update(
            merge_method="dare_ties",
            merger=merger,
            genome={"parameters": {"weight": {"min": 0, "max": 1}, "density": {"min": 0.2, "max": 1}}},
            baselines=[],  # the records are compared; plain merges on disk would only add minutes of merging
        )
        run = Evolution.start(parse_config(data, tiny_world), tmp_path / merger, log=lambda _: None).run(progress=False)
        results[merger] = RunStore(run.run_dir).records()
    assert [r.merge_yaml for r in results["resident"]] == [r.merge_yaml for r in results["disk"]]
    assert [r.tasks for r in results["resident"]] == [r.tasks for r in results["disk"]]


def test_a_fresh_result_is_handed_to_the_parameter_and_a_source_or_a_view_is_copied():
    from mergekit_evo.merge.resident import _ModelWriter

    model = torch.nn.Linear(4, 3)
    source = torch.randn(3, 4)
    writer = _ModelWriter(model, {source.untyped_storage().data_ptr()})

    fresh = torch.randn(3, 4)
    writer.save_tensor("weight", fresh)
    assert model.weight.data_ptr() == fresh.data_ptr()  # no copy

    writer.save_tensor("weight", source)
    assert model.weight.data_ptr() != source.data_ptr() and torch.equal(model.weight, source)
    with torch.no_grad():
        model.weight.add_(1)
    assert not torch.equal(model.weight, source), "the model must never write into a cached source"

    bigger = torch.randn(6, 4)
    writer.save_tensor("weight", bigger[:3])  # a view keeps its whole storage alive: copied
    assert model.weight.data_ptr() != bigger.data_ptr() and torch.equal(model.weight, bigger[:3])

    writer.save_tensor("bias", torch.ones(3, dtype=torch.float64))  # another dtype: cast into place
    assert model.bias.dtype == torch.float32 and torch.equal(model.bias, torch.ones(3))
    writer.finalize()


def test_the_resident_model_shares_no_storage_with_the_cached_sources(tiny_world):
    cfg = _config(tiny_world, "task_arithmetic", {"weight": {"min": 0, "max": 1}})
    space = GenomeSpace(cfg)
    merger = ResidentMerger(config=cfg)
    for value in (0.0, 0.7):  # weight 0 gives the base's values back
        with merger.merged(space.to_merge_config(np.full(space.dim, value)), seed=0) as loaded:
            storages = {p.untyped_storage().data_ptr() for p in loaded.model.parameters()}
    assert merger._source_storages and not storages & merger._source_storages


def test_tied_weights_stay_tied_and_take_the_embeddings_merged_value():
    from transformers import LlamaConfig, LlamaForCausalLM

    from mergekit_evo.merge.resident import _ModelWriter

    model = LlamaForCausalLM(
        LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            vocab_size=50,
            tie_word_embeddings=True,
        )
    )
    writer = _ModelWriter(model, set())
    embedding = torch.randn(50, 32)
    writer.save_tensor("model.embed_tokens.weight", embedding)
    writer.save_tensor("lm_head.weight", torch.zeros(50, 32))  # mergekit may emit both names; the first counts
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert torch.equal(model.lm_head.weight, embedding)
