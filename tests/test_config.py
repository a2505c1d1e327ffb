"""Bad configs are refused before any work starts, with one line naming the field and the fix."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml

from helpers import assert_one_line_error, cli
from mergekit_evo.config import parse_config
from mergekit_evo.demo.configs import two_skill_config
from mergekit_evo.plugin.errors import UserError
from mergekit_evo.plugin.manager import check_plugin_names, registry
from mergekit_evo.space.genome import GenomeSpace


def _broken(world, change):
    data = copy.deepcopy(two_skill_config(world))
    change(data, world)
    return data


BAD = [
    ("unknown top-level key", lambda d, w: d.update(populaton=4), ["populaton", "unknown key"]),
    ("wrong type", lambda d, w: d.update(seed="abc"), ["seed"]),
    ("missing tasks", lambda d, w: d.pop("tasks"), ["tasks", "required"]),
    (
        "missing model",
        lambda d, w: d["models"].append(str(w / "models" / "nope")),
        ["models[2]", "not a local model folder"],
    ),
    ("unknown merge method", lambda d, w: d.update(merge_method="tie"), ["merge_method", "did you mean ties"]),
    (
        "parameter the method does not take",
        lambda d, w: d["genome"]["parameters"].update(density={"min": 0, "max": 1}) or d.update(merge_method="linear"),
        ["genome.parameters.density", "linear takes no parameter"],
    ),
    ("required parameter missing", lambda d, w: d["genome"].update(parameters={}), ["needs weight"]),
    ("base model missing", lambda d, w: d.update(base_model=None), ["base_model", "needs a base model"]),
    (
        "bounds upside down",
        lambda d, w: d["genome"]["parameters"].update(weight={"min": 1, "max": 0}),
        ["weight", "max"],
    ),
    ("unknown key in a task", lambda d, w: d["tasks"][0].update(itmes="x.jsonl"), ["tasks.0.itmes", "unknown key"]),
    ("unknown mode", lambda d, w: d["tasks"][0].update(mode="chat"), ["tasks.0.mode"]),
    ("negative budget", lambda d, w: d["budget"].update(max_evaluations=-1), ["budget.max_evaluations"]),
    ("duplicate task names", lambda d, w: d["tasks"].append(dict(d["tasks"][0])), ["task names must be unique"]),
    ("an observer twice", lambda d, w: d.update(observers=["wandb", {"name": "wandb"}]), ["observer names", "wandb"]),
    ("unknown dtype", lambda d, w: d.update(dtype="float33"), ["dtype", "'bfloat16'", "float33"]),
    ("negative seed", lambda d, w: d.update(seed=-1), ["seed", "greater than or equal to 0"]),
    ("seed past numpy's range", lambda d, w: d.update(seed=2**32), ["seed", "less than"]),
]


@pytest.mark.parametrize("label, change, words", BAD, ids=[b[0] for b in BAD])
def test_a_bad_config_gives_a_one_line_error_naming_the_field(micro_world, label, change, words):
    with pytest.raises(UserError) as error:
        parse_config(_broken(micro_world, change), micro_world)
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    "field, change, words",
    [
        ("optimizer", lambda d: d["optimizer"].update(name="cmaes"), ["optimizer.name", "valid:", "random"]),
        ("estimator", lambda d: d["estimator"].update(name="irt-x"), ["estimator.name", "full", "subsample"]),
        ("backend", lambda d: d["tasks"][0].update(backend="lm_evall"), ["tasks[0].backend", "native"]),
        ("merger", lambda d: d.update(merger="ram"), ["merger", "disk"]),
    ],
)
def test_an_unknown_plugin_name_lists_the_installed_choices(micro_world, field, change, words):
    data = copy.deepcopy(two_skill_config(micro_world))
    change(data)
    with pytest.raises(UserError) as error:
        check_plugin_names(parse_config(data, micro_world), registry())
    for word in words:
        assert word in str(error.value)


def test_mergekit_evolve_configs_are_accepted(micro_world):
    data = {
        "genome": {
            "models": [str(micro_world / "models" / "math_a"), str(micro_world / "models" / "lang_b")],
            "base_model": str(micro_world / "models" / "base"),
            "merge_method": "dare_ties",
            "layer_granularity": 1,
            "normalize": False,
        },
        "tasks": [{"name": "gsm8k", "weight": 1.0}],
    }
    config = parse_config(data, micro_world)
    assert config.merge_method == "dare_ties"
    assert set(config.genome.parameters) == {"weight", "density", "normalize"}
    assert config.genome.layer_groups == "per_layer"
    assert config.tasks[0].backend == "lm-eval"


def test_mergekit_evolve_task_keys_reach_each_task_and_untranslated_keys_are_refused(tiny_world):
    def evolve_config(**top) -> dict:
        genome = {"models": [str(tiny_world / "models" / "math_a")], "base_model": str(tiny_world / "models" / "base")}
        genome["merge_method"] = "task_arithmetic"
        genome.update(top.pop("genome", {}))
        return {"genome": genome, "tasks": [{"name": "t", "metric": "acc_norm,none"}, "u"], **top}

    config = parse_config(evolve_config(limit=30, num_fewshot=2), tiny_world)
    assert config.tasks[0].options == {"limit": 30, "num_fewshot": 2, "metric": "acc_norm"}
    assert config.tasks[1].name == "u" and config.tasks[1].options == {"limit": 30, "num_fewshot": 2}
    for top, word in [
        ({"genome": {"layer_granularity": 3}}, "genome.layer_granularity: 3 does not divide the model's 8 layers"),
        ({"genome": {"tokenizer_source": "base"}}, "genome.tokenizer_source"),
        ({"random_init": True}, "random_init"),
    ]:
        with pytest.raises(UserError, match=word):
            parse_config(evolve_config(**top), tiny_world)


def test_mergekit_evolve_s_filters_smooth_and_granularity_become_the_same_genome(tiny_world):
    models = [str(tiny_world / "models" / m) for m in ("math_a", "lang_b")]
    genome = {"models": models, "base_model": str(tiny_world / "models" / "base"), "merge_method": "ties"}
    genome.update(layer_granularity=2, filters=["self_attn", "mlp"])
    blocks = parse_config({"genome": genome, "tasks": ["t"]}, tiny_world)
    assert blocks.genome.layer_groups == 4 and blocks.genome.filters == ["self_attn", "mlp"]
    assert blocks.genome.smooth is False  # mergekit-evolve's default: each block of 2 layers holds its value
    space = GenomeSpace(blocks, relax_choices=True)
    assert space.dim == 2 * 2 * 3 * 4  # weight and density x models x (2 filters + the rest) x 4 blocks
    weight = space.to_dict(np.linspace(0, 1, space.dim))["models"][0]["parameters"]["weight"]
    assert [entry.get("filter") for entry in weight] == ["self_attn", "mlp", None]
    assert weight[0]["value"][0] == weight[0]["value"][1] != weight[0]["value"][2]  # layers 0-1, then 2-3
    smooth = parse_config({"genome": {**genome, "smooth": True}, "tasks": ["t"]}, tiny_world)
    assert smooth.genome.smooth is True
    assert len(GenomeSpace(smooth).to_dict(np.zeros(space.dim))["models"][0]["parameters"]["weight"][0]["value"]) == 4


def test_mergekit_evolve_s_wandb_flags_turn_on_the_wandb_observer(micro_world, tmp_path):
    from mergekit_evo.config.evolve_compat import EvolveFlags, evolve_flags

    data = two_skill_config(micro_world)
    flags = EvolveFlags(tmp_path, wandb=True, wandb_project="merges", wandb_entity="lab", strategy="serial")
    config = parse_config(evolve_flags(data, flags, gpus=0), micro_world)
    assert [(o.name, o.options) for o in config.observers] == [("wandb", {"project": "merges", "entity": "lab"})]
    check_plugin_names(config, registry())  # the observer is installed and its options are its own
    assert any(m.startswith("--wandb -> the wandb observer") for m in flags.mapped)
    assert (
        parse_config(evolve_flags(data, EvolveFlags(tmp_path, strategy="serial"), gpus=0), micro_world).observers == []
    )


def test_the_cli_prints_a_config_error_in_one_line_without_traceback(micro_world, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_broken(micro_world, lambda d, w: d.update(merge_method="tie"))))
    assert_one_line_error(cli("run", str(path), "--run-dir", str(tmp_path / "run")), "merge_method", "ties")


def test_a_malformed_config_is_refused_before_torch_or_mergekit_is_imported(tmp_path):
    """Importing mergekit (and with it peft, transformers and torch) takes seconds; a typo must not wait for it."""
    import subprocess
    import sys

    path = tmp_path / "bad.yaml"
    path.write_text("models: [a]\ntasks: []\n")
    probe = (
        "import sys\nfrom mergekit_evo.cli import main\n"
        f"try:\n    main(['run', {str(path)!r}])\nexcept SystemExit as e:\n    code = e.code\n"
        "print(code, sorted(m for m in ('torch', 'mergekit', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert "merge_method" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout.split() == ["2", "[]"], result.stdout


def test_listing_the_plugins_does_not_import_mergekit():
    """`mergekit-evo plugins` loads every plugin module; none may pull in mergekit (and peft), or a tracker or plot
    library, just to register."""
    import subprocess
    import sys

    probe = (
        "import sys\nfrom mergekit_evo.plugin.manager import registry\nreg = registry()\n"
        "print(sorted(reg.factories['mergers']), sorted(reg.factories['observers']), "
        "[m for m in ('mergekit', 'wandb', 'mlflow', 'plotly') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "['disk', 'resident'] ['mlflow', 'wandb'] []", result.stdout + result.stderr


def test_an_unknown_optimizer_option_names_the_valid_ones(micro_world, tmp_path):
    from mergekit_evo.run.evolution import Evolution

    data = copy.deepcopy(two_skill_config(micro_world))
    data["estimator"] = {"name": "subsample", "options": {"n": 5}}
    with pytest.raises(UserError, match=r"estimator.options.n: unknown option; valid options: k"):
        Evolution.start(parse_config(data, micro_world), tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "options, words",
    [
        ({"devic": "cpu"}, ["merger.options.devic: unknown option; valid options: device"]),
        ({"device": "gpu"}, ["merger.options.device: 'gpu' is not a torch device; use auto, cpu, cuda or cuda:N"]),
        ({"device": "cuda:7"}, ["merger.options.device: cuda:7 was asked for but torch sees", "use cpu or auto"]),
    ],
    ids=["unknown option", "not a device", "a CUDA device that is not there"],
)
def test_disk_merger_options_are_checked_before_the_run_starts(micro_world, tmp_path, options, words):
    from mergekit_evo.run.evolution import Evolution

    data = copy.deepcopy(two_skill_config(micro_world))
    data["merger"] = {"name": "disk", "options": options}
    with pytest.raises(UserError) as error:
        Evolution.start(parse_config(data, micro_world), tmp_path / "run")
    assert all(word in str(error.value) for word in words) and "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "name",
    [
        "tiny-cross-skill.yaml",
        "tiny-task-arithmetic.yaml",
        "tiny-dare-ties-subsample.yaml",
        "tiny-pareto-nsga2.yaml",
        "tiny-lm-eval.yaml",
        "tiny-filters.yaml",
        "tiny-method-gene.yaml",
        "tiny-dfs.yaml",
        "tiny-ps-dfs.yaml",
        "tiny-m2n2.yaml",
    ],
)
def test_the_example_configs_load(tiny_world, monkeypatch, name):
    from pathlib import Path

    from mergekit_evo.config import load_config
    from mergekit_evo.space.factory import genome_space

    monkeypatch.setenv("TINY_WORLD", str(tiny_world))
    config = load_config(Path(__file__).parent.parent / "examples" / name)
    reg = registry()
    check_plugin_names(config, reg)
    reg.get("optimizers", config.optimizer.name, "optimizer.name").check_options(
        config.optimizer.options, len(config.objective_names())
    )
    assert genome_space(config).dim >= 4


def test_the_cross_skill_example_is_the_demo_s_search(tiny_world, monkeypatch):
    from pathlib import Path

    from mergekit_evo.config import load_config
    from mergekit_evo.demo.configs import cross_skill_config

    monkeypatch.setenv("TINY_WORLD", str(tiny_world))
    example = load_config(Path(__file__).parent.parent / "examples" / "tiny-cross-skill.yaml")
    demo = parse_config(cross_skill_config(tiny_world), tiny_world)
    assert example.model_dump(exclude={"run_dir"}) == demo.model_dump(exclude={"run_dir"})
