"""Inputs that cannot work are refused before the first merge, in one line, and leave no run directory behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from helpers import assert_one_line_error, cli, item_count, write_config
from mergekit_evo.config import parse_config
from mergekit_evo.demo.configs import two_skill_config
from mergekit_evo.plugin.errors import UserError
from mergekit_evo.run.evolution import Evolution


def _model_copy(world: Path, into: Path, name: str = "lang_b") -> Path:
    target = into / name
    shutil.copytree(world / "models" / name, target)
    return target


def _edit_config(model: Path, **changes) -> None:
    config = json.loads((model / "config.json").read_text())
    config.update(changes)
    (model / "config.json").write_text(json.dumps(config))


def _rewrite_weights(model: Path, change) -> None:
    path = model / "model.safetensors"
    tensors = load_file(str(path))
    save_file(change(tensors), str(path), metadata={"format": "pt"})


def _fewer_layers(model: Path) -> None:
    _rewrite_weights(model, lambda t: {k: v for k, v in t.items() if ".layers.3." not in k})
    _edit_config(model, num_hidden_layers=3)


def _narrower_mlp(model: Path) -> None:
    def narrow(tensors):
        out = {}
        for name, value in tensors.items():
            if name.endswith(("gate_proj.weight", "up_proj.weight")):
                value = value[:256].clone()
            elif name.endswith("down_proj.weight"):
                value = value[:, :256].clone()
            out[name] = value
        return out

    _rewrite_weights(model, narrow)
    _edit_config(model, intermediate_size=256)


def _refused(world: Path, tmp_path: Path, data: dict) -> str:
    run_dir = tmp_path / "run"
    with pytest.raises(UserError) as refused:
        Evolution.start(parse_config(data, world), run_dir, log=lambda _: None)
    assert not run_dir.exists(), "a refused run must leave no folder behind"
    assert "\n" not in str(refused.value)
    return str(refused.value)


def test_the_same_model_twice_is_refused(micro_world, tmp_path):
    data = two_skill_config(micro_world)
    data["models"] = [data["models"][0], data["models"][0]]
    assert "models[1]" in _refused(micro_world, tmp_path, data)


@pytest.mark.parametrize(
    "label, change, words",
    [
        ("another layer count", _fewer_layers, ["3 layers", "base_model (base) has 8"]),
        ("other tensor shapes", _narrower_mlp, ["mlp.down_proj.weight", "[256, 256]", "[256, 512]"]),
    ],
    ids=["layers", "shapes"],
)
def test_a_model_that_does_not_fit_the_others_is_refused_naming_how(tiny_world, tmp_path, label, change, words):
    model = _model_copy(tiny_world, tmp_path / "inputs")
    change(model)
    data = two_skill_config(tiny_world)
    data["models"][1] = str(model)
    message = _refused(tiny_world, tmp_path, data)
    assert message.startswith("models[1]: ")
    for word in words:
        assert word in message


def test_a_model_whose_config_json_was_edited_is_refused_on_the_command_line_with_no_run_folder(micro_world, tmp_path):
    model = _model_copy(micro_world, tmp_path / "inputs")
    _edit_config(model, hidden_size=512)
    config = write_config(micro_world, tmp_path, run_dir=str(tmp_path / "run"))
    text = config.read_text().replace(str(micro_world / "models" / "lang_b"), str(model))
    config.write_text(text)
    result = cli("run", str(config), "--no-progress")
    assert_one_line_error(result, "models[1]", "config.json")
    assert not (tmp_path / "run").exists()


def test_a_multiple_choice_item_whose_choices_are_a_string_is_refused(micro_world, tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"id": "q1", "prompt": "2 plus 2 ?", "choices": "abcd", "answer": 0}) + "\n")
    data = two_skill_config(micro_world)
    data["tasks"][0]["items"] = str(items)
    message = _refused(micro_world, tmp_path, data)
    assert f"{items}:1" in message and "'choices' must be a list" in message


def test_more_layer_groups_than_layers_is_refused(tiny_world, tmp_path):
    data = two_skill_config(tiny_world)
    data["genome"]["layer_groups"] = 70
    assert "genome.layer_groups: 70 is more than the model's 8 layers" in _refused(tiny_world, tmp_path, data)


def test_a_subsample_larger_than_the_task_is_refused(micro_world, tmp_path):
    data = two_skill_config(micro_world)
    data["estimator"] = {"name": "subsample", "options": {"k": 500}}
    message = _refused(micro_world, tmp_path, data)
    assert (
        "estimator.options.k: 500" in message
        and f"{item_count(micro_world, 'math_a', 'search')} search items" in message
    )


@pytest.mark.parametrize("value", ["0", "-3"])
def test_a_command_line_budget_is_held_to_the_configs_rules(micro_world, tmp_path, value):
    config = write_config(micro_world, tmp_path, run_dir=str(tmp_path / "run"))
    assert_one_line_error(cli("run", str(config), "--max-evaluations", value), "--max-evaluations")
    assert not (tmp_path / "run").exists()


def test_a_negative_seed_is_refused_and_leaves_no_run_folder(micro_world, tmp_path):
    config = write_config(micro_world, tmp_path, run_dir=str(tmp_path / "run"), seed=-1)
    assert_one_line_error(cli("run", str(config)), "seed")
    assert_one_line_error(cli("run", str(write_config(micro_world, tmp_path)), "--seed", "-1"), "--seed")
    assert not (tmp_path / "run").exists()


def test_a_folder_or_a_run_given_as_config_and_a_file_given_as_run_dir_are_told_apart(micro_world, tmp_path):
    assert_one_line_error(cli("run", str(tmp_path)), "is a folder", "YAML file")
    config = write_config(micro_world, tmp_path)
    assert_one_line_error(cli("run", str(config), "--run-dir", str(config)), "is a file")
    assert_one_line_error(cli("resume", str(config)), "not a run directory", "is a file")
