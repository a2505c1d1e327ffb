"""The richer search spaces: tensor-group genes, unsmoothed layer groups, the method as a gene and data-flow (layer
stacking) genomes, each emitted as a recipe mergekit runs unchanged; and the per-item `tell`."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
import yaml
from mergekit.config import MergeConfiguration
from safetensors.torch import save_file

from helpers import BIN, registered, tensors
from mergekit_evo.config import parse_config
from mergekit_evo.demo.configs import two_skill_config
from mergekit_evo.merge.base import merge_to_disk
from mergekit_evo.merge.resident import ResidentMerger
from mergekit_evo.mergekit_api import method as mergekit_method
from mergekit_evo.plugin.errors import UserError
from mergekit_evo.plugin.hookspecs import hookimpl
from mergekit_evo.run.evolution import Evolution
from mergekit_evo.run.optimizers import Optimizer, RandomSearch, tell
from mergekit_evo.space.dataflow import materialize_sources
from mergekit_evo.space.factory import genome_space
from mergekit_evo.space.genome import GenomeSpace
from mergekit_evo.store.runs import RunStore

METHODS = ["linear", "task_arithmetic", "ties", "dare_ties"]


def _config(world, **changes):
    data = two_skill_config(world)
    data["merger"] = {"name": "resident", "options": {"device": "cpu"}}
    data.update(changes)
    return parse_config(data, world)


def _dfs_config(world, dfs=None, **changes):
    return _config(world, merge_method="passthrough", base_model=None, genome={"dfs": dfs or {}}, **changes)


def _same(model, expected):
    ours = model.state_dict()
    assert set(expected) <= set(ours)
    for name, value in expected.items():
        assert torch.equal(ours[name], value), name


def _mergekit_yaml(text: str, out, seed: int):
    (out.parent / f"{out.name}.yaml").write_text(text)
    subprocess.run(
        [str(BIN / "mergekit-yaml"), str(out.parent / f"{out.name}.yaml"), str(out), "--random-seed", str(seed)],
        check=True,
        capture_output=True,
    )
    return out


# ---------------------------------------------------------------------------------------------- tensor groups


def test_filters_give_each_tensor_group_its_genes_and_a_catch_all(tiny_world):
    space = GenomeSpace(
        _config(
            tiny_world,
            genome={"parameters": {"weight": {"min": 0, "max": 1}}, "layer_groups": 2, "filters": ["self_attn", "mlp"]},
        )
    )
    assert space.names[:6] == [
        "layers[0:4].math_a.self_attn.weight",
        "layers[4:8].math_a.self_attn.weight",
        "layers[0:4].math_a.mlp.weight",
        "layers[4:8].math_a.mlp.weight",
        "layers[0:4].math_a.other.weight",
        "layers[4:8].math_a.other.weight",
    ]
    x = np.linspace(0, 1, space.dim)
    weight = space.to_dict(x)["models"][0]["parameters"]["weight"]
    assert [entry.get("filter") for entry in weight] == ["self_attn", "mlp", None]
    assert weight[0]["value"] == pytest.approx(list(x[:2]), abs=1e-4)


def test_unsmoothed_groups_hold_their_value_over_their_block_of_layers(tiny_world):
    space = GenomeSpace(
        _config(tiny_world, genome={"parameters": {"weight": {"min": 0, "max": 1}}, "layer_groups": 4, "smooth": False})
    )
    assert space.names[:4] == [f"layers[{a}:{a + 2}].math_a.weight" for a in (0, 2, 4, 6)]
    weight = space.to_dict(np.array([0.1, 0.2, 0.3, 0.4, 0, 0, 0, 0]))["models"][0]["parameters"]["weight"]
    assert weight == [0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4]  # one value per layer: each its block's


@pytest.mark.parametrize("smooth", [True, False], ids=["smooth", "blocks"])
def test_filtered_genomes_through_mergekit_yaml_give_the_resident_tensors_bitwise(tiny_world, tmp_path, smooth):
    genome = {
        "parameters": {"weight": {"min": 0, "max": 1}, "density": {"min": 0.2, "max": 1}},
        "layer_groups": 3,
        "filters": ["self_attn", "mlp"],
        "smooth": smooth,
    }
    cfg = _config(tiny_world, merge_method="dare_ties", genome=genome)
    space = GenomeSpace(cfg)
    x = np.random.default_rng(3).random(space.dim)
    seed = 17
    expected = tensors(_mergekit_yaml(space.to_yaml(x), tmp_path / "m", seed))
    with ResidentMerger(config=cfg).merged(space.to_merge_config(x), seed=seed) as loaded:
        _same(loaded.model, expected)
    # and the groups really differ: attention and MLP of one layer were merged with other weights
    assert len({json.dumps(v["value"]) for v in space.to_dict(x)["models"][0]["parameters"]["weight"]}) == 3


# ---------------------------------------------------------------------------------------------- method gene


def _method_config(world, relax):
    genome = {"parameters": {"weight": {"min": 0.1, "max": 1}, "density": {"min": 0.3, "max": 1}, "normalize": True}}
    return GenomeSpace(_config(world, merge_method=METHODS, genome=genome), relax_choices=relax)


@pytest.mark.parametrize("relax", [False, True], ids=["one-gene", "relaxed"])
def test_a_method_gene_chooses_each_method_and_its_yaml_is_valid_for_it(tiny_world, tmp_path, relax):
    space = _method_config(tiny_world, relax)
    chooser = [i for i, g in enumerate(space.genes) if g.parameter == "merge_method"]
    assert len(chooser) == (len(METHODS) if relax else 1)
    assert space.method_of(space.default_point()) == METHODS[0]  # the search starts from the first listed
    merger = ResidentMerger(config=space.config)
    for k, method in enumerate(METHODS):
        x = np.full(space.dim, 0.5)
        if relax:
            x[chooser] = 0.2
            x[chooser[k]] = 0.9
        else:
            x[chooser[0]] = (k + 0.5) / len(METHODS)
        data = space.to_dict(x)
        assert data["merge_method"] == method and space.method_of(x) == method
        config = MergeConfiguration.model_validate(yaml.safe_load(space.to_yaml(x)))
        takes = {p.name for p in mergekit_method(method).parameters}
        for entry in data["models"]:
            assert set(entry.get("parameters", {})) <= takes
            assert ("density" in entry.get("parameters", {})) == (method in ("ties", "dare_ties"))  # where it counts
        assert set(data.get("parameters", {})) <= takes
        assert ("base_model" in data) == (method != "linear")
        with merger.merged(config, seed=0) as loaded:  # and mergekit plans and runs it
            if method == "dare_ties" and not relax:  # after the other methods' plans: still mergekit's tensors
                _same(loaded.model, tensors(merge_to_disk(config, tmp_path / method, seed=0)))
        assert space.encode(data)[chooser].argmax() == (k if relax else 0)


def test_a_method_list_is_checked_method_by_method(tiny_world):
    with pytest.raises(UserError, match="merge_method: mergekit has no method 'tie'"):
        _config(tiny_world, merge_method=["task_arithmetic", "tie"])
    with pytest.raises(UserError, match="genome.parameters.t: none of linear, ties takes no parameter"):
        _config(
            tiny_world,
            merge_method=["linear", "ties"],
            genome={"parameters": {"weight": {"min": 0, "max": 1}, "t": {"min": 0, "max": 1}}},
        )
    with pytest.raises(UserError, match="merge_method: each method may appear once"):
        _config(tiny_world, merge_method=["ties", "ties"])


# ---------------------------------------------------------------------------------------------- data flow


def test_a_dfs_path_follows_the_genes_and_is_bounded_by_max_layers(tiny_world):
    space = genome_space(_dfs_config(tiny_world, {"repeats": 2, "max_layers": 5}))
    assert space.dim == 2 * (8 + 8)
    assert space.to_dict(space.default_point())["slices"] == [
        {"sources": [{"model": space.sources[0], "layer_range": [0, 5]}]}
    ]  # the first source as it is, cut to max_layers
    x = np.zeros(space.dim)
    x[[0, 1, 9, 10, 17]] = [0.9, 0.8, 0.95, 0.7, 0.6]  # math_a 0-1, lang_b 1-2, then math_a 1 again
    slices = space.to_dict(x)["slices"]
    assert [(s["sources"][0]["model"], s["sources"][0]["layer_range"]) for s in slices] == [
        (space.sources[0], [0, 2]),
        (space.sources[1], [1, 3]),
        (space.sources[0], [1, 2]),
    ]
    x[[20, 21]] = [0.99, 0.98]  # two more: seven wanted, five allowed; the smallest genes (0.7, 0.6) give way
    assert space.layer_count(x) == 5
    assert space.path(x) == [0, 1, 9, 20, 21]
    assert space.layer_count(np.zeros(space.dim)) == 1  # never an empty model


def test_a_dfs_recipe_runs_through_mergekit_yaml_loads_and_has_the_genes_layer_count(tiny_world, tmp_path):
    cfg = _dfs_config(tiny_world, {"repeats": 2, "max_layers": 12, "scale": True})
    space = genome_space(cfg)
    x = np.random.default_rng(5).random(space.dim)
    n = space.layer_count(x)
    assert 1 < n <= 12 and any("parameters" in s["sources"][0] for s in space.to_dict(x)["slices"])
    out = _mergekit_yaml(space.to_yaml(x), tmp_path / "dfs", seed=0)
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == n
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out)
    assert len(model.model.layers) == n
    expected = tensors(out)
    with ResidentMerger(config=cfg).merged(space.to_merge_config(x), seed=0) as loaded:
        _same(loaded.model, expected)
    # a scaled transition: that layer's o_proj is its source's times its scale gene, and its q_proj untouched
    offset = 0
    for piece in space.to_dict(x)["slices"]:
        source = piece["sources"][0]
        if "parameters" in source:
            break
        offset += source["layer_range"][1] - source["layer_range"][0]
    original = tensors(source["model"])
    factor = source["parameters"]["scale"][0]["value"]
    name = "model.layers.{}.self_attn.{}.weight"
    layer = source["layer_range"][0]
    assert torch.allclose(expected[name.format(offset, "o_proj")], original[name.format(layer, "o_proj")] * factor)
    assert torch.equal(expected[name.format(offset, "q_proj")], original[name.format(layer, "q_proj")])


def test_a_dfs_genome_refuses_what_it_cannot_use(tiny_world, tmp_path):
    with pytest.raises(UserError, match="set merge_method: passthrough"):
        _config(tiny_world, genome={"dfs": {}})
    with pytest.raises(UserError, match="genome.parameters: a data-flow genome evolves the path of layers only"):
        _config(
            tiny_world,
            merge_method="passthrough",
            base_model=None,
            genome={"dfs": {}, "parameters": {"scale": {"min": 0, "max": 1}}},
        )
    gpt2_like = tmp_path / "gpt2-like"  # another architecture's names: nothing for a scale gene to scale
    gpt2_like.mkdir()
    (gpt2_like / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 2}))
    save_file({"transformer.h.0.attn.c_proj.weight": torch.zeros(2, 2)}, gpt2_like / "model.safetensors")
    cfg = _dfs_config(tiny_world, {"scale": True})
    with pytest.raises(UserError, match="genome.dfs.scale: gpt2-like has no o_proj or down_proj tensors"):
        genome_space(cfg.model_copy(update={"models": [str(gpt2_like), cfg.models[1]]}))
    with pytest.raises(UserError, match="merged_sources: each merged source's name may appear once"):
        _config(
            tiny_world,
            merge_method="passthrough",
            base_model=None,
            genome={"dfs": {"merged_sources": [{"name": "a", "recipe": {}}, {"name": "a", "recipe": {}}]}},
        )


class ItemsRecorder(RandomSearch):
    """Random search that asks for the per-item scores and keeps what it is told."""

    wants_item_scores = True
    told: list[np.ndarray] = []

    def tell(self, xs, fitness, item_scores):
        ItemsRecorder.told.append(np.array(item_scores))


class Plain(Optimizer):
    """An optimizer of the old kind: `tell(xs, fitness)` and nothing more."""

    def ask(self):
        return np.zeros((1, self.dim))

    def tell(self, xs, fitness):
        self.told = (xs, fitness)


def test_the_item_scores_reach_an_optimizer_that_asks_and_no_other():
    plain = Plain(dim=2, n_objectives=1, seed=0, population=1, options={}, x0=np.zeros(2))
    built = []
    tell(plain, np.zeros((1, 2)), np.ones((1, 1)), lambda: built.append(1) or np.ones((1, 3)))
    assert plain.told[1].shape == (1, 1) and built == []  # told as ever; the matrix was not even built
    recorder = ItemsRecorder(dim=2, n_objectives=1, seed=0, population=1, options={}, x0=np.zeros(2))
    ItemsRecorder.told = []
    tell(recorder, np.zeros((1, 2)), np.ones((1, 1)), lambda: np.ones((1, 3)))
    assert ItemsRecorder.told[0].shape == (1, 3)


class RecorderPlugin:
    @hookimpl
    def register_optimizers(self, register):
        register("items-recorder", ItemsRecorder)


def test_a_ps_dfs_run_merges_its_source_and_tells_the_items_of_every_candidate(tiny_world, tmp_path):
    ps = two_skill_config(tiny_world)
    recipe = {
        "merge_method": "task_arithmetic",
        "base_model": ps["base_model"],
        "models": [{"model": m, "parameters": {"weight": 1.0}} for m in ps["models"]],
        "dtype": "float32",
    }
    cfg = _dfs_config(
        tiny_world,
        {"repeats": 1, "max_layers": 10, "merged_sources": [{"name": "ps", "recipe": recipe}]},
        optimizer={"name": "items-recorder", "population": 3},
        estimator={"name": "subsample", "options": {"k": 6}},
        budget={"max_evaluations": 6},
        selection={"top_k": 1},
        run_dir=str(tmp_path / "run"),
    )
    ItemsRecorder.told = []
    logged: list[str] = []
    with registered(RecorderPlugin(), "items-recorder-plugin"):
        result = Evolution.start(cfg, tmp_path / "run", log=logged.append).run(progress=False)
    source = tmp_path / "run" / "sources" / "ps"
    assert "data-flow genome: 24 positions (1 x [ps (8 layers), math_a (8 layers), lang_b (8 layers)])" in logged[0]
    assert f"merging the data-flow source ps into {source}" in logged
    assert json.loads((source / "config.json").read_text())["num_hidden_layers"] == 8
    expected = tensors(merge_to_disk(MergeConfiguration.model_validate(recipe), tmp_path / "ps", seed=0))
    assert all(torch.equal(tensors(source)[k], v) for k, v in expected.items())
    records = RunStore(tmp_path / "run").records()
    assert len(records) == 6 and all(r.ok for r in records)
    start = yaml.safe_load(records[0].merge_yaml)
    assert start["slices"] == [{"sources": [{"model": str(source), "layer_range": [0, 8]}]}]  # PS as it is
    assert "ps (merged source)" in result.baselines and "start point" not in result.baselines  # the same model
    assert len(ItemsRecorder.told) == 2
    for g, matrix in enumerate(ItemsRecorder.told):
        rows = [r for r in records if r.generation == g]
        assert matrix.shape == (3, 12)
        for row, record in zip(matrix, sorted(rows, key=lambda r: r.member)):
            np.testing.assert_array_equal(row, record.tasks["math_a"]["scores"] + record.tasks["facts_b"]["scores"])
    before = sorted(p.name for p in source.iterdir())
    materialize_sources(cfg.model_copy(update={"run_dir": tmp_path / "run"}), log=lambda _: None)  # a resume: kept
    assert sorted(p.name for p in source.iterdir()) == before
