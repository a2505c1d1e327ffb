"""lm-eval tasks as fitness, through the real lm-eval harness, offline, on the tiny world's task YAMLs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from mergekit_evo import UserError
from mergekit_evo.testing import (
    SKILLS,
    Evolution,
    Item,
    NativeTask,
    RunStore,
    TaskConfig,
    choice_logprobs,
    encode_items,
    load_model,
    parse_config,
    random_merges,
    task_file,
    two_skill_config,
    write_items,
)
from mergekit_evo_lmeval.backend import LmEvalTask


def _lm_eval_task(world, skill="math_a", split="search", **options):
    include = [str(world / "tasks" / "lm_eval")]
    return LmEvalTask(
        config=TaskConfig(
            name=skill,
            backend="lm-eval",
            batch_size=64,
            options={"task": f"tiny_{skill}_mc_{split}", "include_path": include, **options},
        )
    )


def _lm_eval_tasks(world):
    """The demo's two tasks, named as the tiny world's lm-eval YAMLs, with the held-out splits."""
    include = [str(world / "tasks" / "lm_eval")]
    return [
        {
            "name": skill,
            "backend": "lm-eval",
            "options": {
                "task": f"tiny_{skill}_mc_search",
                "test_task": f"tiny_{skill}_mc_test",
                "include_path": include,
            },
        }
        for skill in ("math_a", "facts_b")
    ]


def _world_models(world):
    for name in ("base", "math_a", "lang_b"):
        yield name, load_model(world / "models" / name)
    yield from random_merges(world)


# Items compared per task and split: every facts item, the first 128 of the 536 and 256 arithmetic ones (in the
# world's shuffled order); all 2,096 items took 2 minutes.
ITEMS_PER_SPLIT = 128


def _sampled_tasks(world, folder):
    """Per (skill, split): the world's lm-eval task and a native task, both over its first ITEMS_PER_SPLIT items.
    Every YAML is written before the first task is built (the backend reads a folder's tasks once)."""
    names = {}
    for skill in SKILLS:
        for split in ("search", "test"):
            items = task_file(world, skill, split)
            sampled = folder / items.name
            sampled.write_text("".join(items.read_text().splitlines(keepends=True)[:ITEMS_PER_SPLIT]))
            name = f"tiny_{skill}_mc_{split}"
            task = yaml.safe_load((world / "tasks" / "lm_eval" / f"{name}.yaml").read_text())
            task["task"] = f"sampled_{name}"
            task["dataset_kwargs"]["data_files"]["test"] = str(sampled)
            (folder / f"sampled_{name}.yaml").write_text(yaml.safe_dump(task, sort_keys=False))
            names[(skill, split)] = (task["task"], sampled)
    return {
        (skill, split): (
            _lm_eval_task(world, skill, split, task=task, include_path=[str(folder)]),
            NativeTask(config=TaskConfig(name=skill, items=sampled)),
        )
        for (skill, split), (task, sampled) in names.items()
    }


@pytest.mark.slow
def test_lm_eval_gives_the_native_scorers_answers_and_logprobs_on_every_world_task(tiny_world, tmp_path):
    """The inputs and 8 random merges, every task's search and held-out items (ITEMS_PER_SPLIT of each): the same
    0/1 answers through both backends, and lm-eval's log-likelihood of every choice within 1e-4 of the native
    scorer's."""
    tasks = _sampled_tasks(tiny_world, tmp_path)
    assert sum(len(native.item_ids) for _, native in tasks.values()) == 2 * 2 * ITEMS_PER_SPLIT + 2 * 256
    mean = []
    for name, loaded in _world_models(tiny_world):
        for (skill, split), (through_lm_eval, native) in tasks.items():
            where = f"{name}, {skill} {split}"
            every = range(len(native.item_ids))
            ours = native.score(loaded, every)
            np.testing.assert_array_equal(through_lm_eval.score(loaded, every), ours, where)
            theirs = [[float(ll) for ll, _ in s["filtered_resps"]] for s in through_lm_eval.samples]
            logprobs = choice_logprobs(loaded.model, native.encoded(loaded.tokenizer), list(every))
            np.testing.assert_allclose(np.concatenate(theirs), np.concatenate(logprobs), rtol=0, atol=1e-4)
            mean.append(ours.mean())
    assert 0.1 < np.mean(mean) < 0.9  # right and wrong answers both compared


def test_prompts_ending_in_a_space_ties_long_choices_and_empty_prompts_score_as_in_lm_eval(tiny_world, tmp_path):
    """lm-eval's conventions where they matter: a prompt's trailing space moves to the choices, equal
    log-likelihoods go to the first choice, choices of several tokens, an empty prompt scored after BOS/EOS."""
    loaded = load_model(tiny_world / "models" / "math_a")
    words = "nani wa 3 tasu 4 hiku 7 kakeru 9 ?".split()
    rng = np.random.default_rng(0)
    items = [
        Item(id="space", prompt="nani wa 3 tasu 4 ? ", choices=("7", "8", "1"), answer=0),
        Item(id="tie-first", prompt="nani wa 3 tasu 4 ?", choices=("7", "7"), answer=0),
        Item(id="tie-second", prompt="nani wa 3 tasu 4 ?", choices=("7", "7"), answer=1),
    ] + [
        Item(
            id=f"long-{n}",
            prompt="nani " + " ".join(rng.choice(words, size=int(rng.integers(0, 9)))),  # lm-eval reads "4" as a number
            choices=tuple(" ".join(rng.choice(words, size=int(rng.integers(1, 6)))) for _ in range(4)),
            answer=n % 4,
        )
        for n in range(40)
    ]
    write_items(tmp_path / "items.jsonl", items)
    yaml_text = (tiny_world / "tasks" / "lm_eval" / "tiny_math_a_mc_search.yaml").read_text()
    task_yaml = yaml.safe_load(yaml_text)
    task_yaml.update(task="tiny_conventions", dataset_kwargs={"data_files": {"test": str(tmp_path / "items.jsonl")}})
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "conventions.yaml").write_text(yaml.safe_dump(task_yaml))
    through_lm_eval = LmEvalTask(
        config=TaskConfig(
            name="conventions",
            backend="lm-eval",
            options={"task": "tiny_conventions", "include_path": [str(tmp_path / "tasks")]},
        )
    )
    native = NativeTask(config=TaskConfig(name="conventions", items=tmp_path / "items.jsonl"))
    every = range(len(items))
    ours = native.score(loaded, every)
    np.testing.assert_array_equal(through_lm_eval.score(loaded, every), ours)
    assert ours[1:3].tolist() == [1.0, 0.0]
    theirs = [[float(ll) for ll, _ in s["filtered_resps"]] for s in through_lm_eval.samples]
    logprobs = choice_logprobs(loaded.model, native.encoded(loaded.tokenizer), list(every))
    np.testing.assert_allclose(np.concatenate(theirs), np.concatenate(logprobs), rtol=0, atol=1e-4)
    # an empty prompt (a task YAML cannot render one; lm-eval's model takes it): scored after the same token
    from lm_eval.api.instance import Instance

    empty = Item(id="empty", prompt="", choices=("nani", "wa 3", "?"), answer=1)
    requests = [
        Instance(request_type="loglikelihood", doc={}, arguments=("", " " + choice), idx=i)
        for i, choice in enumerate(empty.choices)
    ]
    theirs = [ll for ll, _ in through_lm_eval._language_model(loaded).loglikelihood(requests, disable_tqdm=True)]
    ours = choice_logprobs(loaded.model, encode_items(loaded.tokenizer, [empty], "mc"), [0])[0]
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-4)


def test_generation_tasks_match_the_native_exact_match_too(tiny_world):
    # the math specialist: partly right in generation (0.6-0.7) on every world, so the equality means something
    loaded = load_model(tiny_world / "models" / "math_a")
    include = [str(tiny_world / "tasks" / "lm_eval")]
    through_lm_eval = LmEvalTask(
        config=TaskConfig(
            name="math_a", backend="lm-eval", options={"task": "tiny_math_a_gen_search", "include_path": include}
        )
    )
    native = NativeTask(
        config=TaskConfig(name="math_a", mode="gen", items=tiny_world / "tasks" / "math_a.search.jsonl")
    )
    assert through_lm_eval.metric == "exact_match"
    ours, theirs = through_lm_eval.score(loaded, range(128)), native.score(loaded, range(128))
    np.testing.assert_array_equal(ours, theirs)
    assert 0 < ours.mean() < 1


def test_scoring_a_subset_evaluates_only_those_items(tiny_world, monkeypatch):
    from lm_eval.models.huggingface import HFLM

    requests = []
    original = HFLM.loglikelihood

    def counting(self, reqs, disable_tqdm=False):
        requests.extend(reqs)
        return original(self, reqs, disable_tqdm=disable_tqdm)

    monkeypatch.setattr(HFLM, "loglikelihood", counting)
    task = _lm_eval_task(tiny_world)
    subset = sorted(np.random.default_rng(0).choice(128, 20, replace=False).tolist())
    scores = task.score(load_model(tiny_world / "models" / "lang_b"), subset)
    assert task.evaluated == subset
    assert len(requests) == 20 * 4  # four choices per item, and nothing else
    assert {r.doc_id for r in requests} == set(range(20))  # lm-eval numbers the documents it was given
    assert len(scores) == 20


def test_the_same_model_object_is_wrapped_once(tiny_world):
    task = _lm_eval_task(tiny_world)
    loaded = load_model(tiny_world / "models" / "math_a")
    task.score(loaded, [0, 1])
    wrapper = task._lm
    task.score(loaded, [2, 3])
    assert task._lm is wrapper


def test_an_evolution_with_lm_eval_tasks_records_per_item_scores(tiny_world, tmp_path):
    data = two_skill_config(tiny_world, max_evaluations=6, population=3)
    data.update(tasks=_lm_eval_tasks(tiny_world), estimator={"name": "subsample", "options": {"k": 16}})
    result = Evolution.start(parse_config(data, tiny_world), tmp_path / "run", log=lambda _: None).run(progress=False)
    records = RunStore(tmp_path / "run").records()
    assert len(records) == 6 and all(r.ok for r in records)
    assert all(len(r.tasks[t]["scores"]) == 16 for r in records for t in ("math_a", "facts_b"))
    assert all(set(r.tasks["math_a"]["scores"]) <= {0.0, 1.0} for r in records)
    assert set(result.best_heldout) == {"math_a", "facts_b"}  # the test_task splits, scored once for the best


def test_the_wrapper_kept_over_the_resident_model_scores_each_candidates_weights(tiny_world, tmp_path):
    """One HFLM serves every candidate of a resident run: its scores must equal those of fresh models from disk."""
    scored = {}
    for merger in ("resident", "disk"):
        data = two_skill_config(tiny_world, max_evaluations=3, population=3)
        data.update(
            tasks=_lm_eval_tasks(tiny_world), estimator={"name": "subsample", "options": {"k": 16}}, merger=merger
        )
        Evolution.start(parse_config(data, tiny_world), tmp_path / merger, log=lambda _: None).run(progress=False)
        scored[merger] = [(r.merge_yaml, r.tasks) for r in RunStore(tmp_path / merger).records()]
    assert scored["resident"] == scored["disk"]
    assert len({str(tasks) for _, tasks in scored["resident"]}) > 1, "the candidates should not all score alike"


def test_full_lm_eval_runs_every_document_of_the_task(tiny_world, tmp_path):
    data = two_skill_config(tiny_world, max_evaluations=1, population=1)
    data.update(tasks=_lm_eval_tasks(tiny_world)[:1], estimator={"name": "full-lm-eval"})
    result = Evolution.start(parse_config(data, tiny_world), tmp_path / "run", log=lambda _: None).run(progress=False)
    n_items = len(task_file(tiny_world, "math_a", "search").read_text().splitlines())
    assert len(result.records[0].tasks["math_a"]["scores"]) == n_items
    assert result.records[0].fitness == pytest.approx(np.mean(result.records[0].tasks["math_a"]["scores"]))


def test_limit_keeps_the_first_documents(tiny_world):
    assert _lm_eval_task(tiny_world, limit=10).item_ids == [str(i) for i in range(10)]


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (
            {"task": "tiny_math_a_mc_serch"},
            ["tasks.math_a.options.task", "lm-eval has no task", "tiny_math_a_mc_search"],
        ),
        ({"metric": "f1"}, ["tasks.math_a.options.metric", "reports no metric 'f1'", "acc"]),
        ({"fewshot": 2}, ["tasks.math_a.options.fewshot: unknown option", "num_fewshot"]),
        ({"model": "vllm"}, ["tasks.math_a.options.model", "vllm"]),
        ({"include_path": ["/no/such/folder"]}, ["include_path", "not a folder"]),
    ],
)
def test_bad_task_options_are_refused_in_one_line(tiny_world, options, words):
    base = {"task": "tiny_math_a_mc_search", "include_path": [str(tiny_world / "tasks" / "lm_eval")]}
    with pytest.raises(UserError) as e:
        LmEvalTask(config=TaskConfig(name="math_a", backend="lm-eval", options={**base, **options}))
    message = str(e.value)
    assert all(w in message for w in words), message
    assert "\n" not in message


def test_an_unknown_task_name_is_one_line_from_the_cli_with_close_matches(tiny_world, tmp_path):
    data = two_skill_config(tiny_world)
    tasks = _lm_eval_tasks(tiny_world)
    tasks[0]["options"]["task"] = "tiny_math_a_mc_serch"
    data["tasks"] = tasks
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    exe = str(Path(sys.executable).parent / "mergekit-evo")
    result = subprocess.run(
        [exe, "run", str(path), "--run-dir", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "lm-eval has no task 'tiny_math_a_mc_serch'; did you mean tiny_math_a_mc_search" in lines[0]
