"""The tiny world: deterministic, loadable by transformers and mergekit, and showing the merging effect."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from mergekit_evo.demo.tiny_world import WorldSpec, ensure_world, numerics, task_file
from mergekit_evo.demo.tiny_world.build import evaluate_model
from mergekit_evo.demo.tiny_world.language import OPERATIONS, SKILLS, translate
from mergekit_evo.demo.tiny_world.numerics import PINNED, reference_weights, weights_hash
from mergekit_evo.merge.base import load_model, merge_to_disk, parse_merge_config
from mergekit_evo.scoring.items import Item, read_items
from mergekit_evo.scoring.native import score_items

SMALL = WorldSpec(
    hidden=32, layers=1, base_steps=20, specialist_steps=10, language_steps=10, items_per_skill=24, batch_size=16
)


def _tensors(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


def test_a_small_world_builds_to_the_reference_weights_kept_in_the_repository(tmp_path):
    lines: list[str] = []
    pinned = SMALL.model_copy(update={"pinned": True})
    world = ensure_world(tmp_path / "w", pinned, log=lines.append)
    manifest = json.loads((world / "manifest.json").read_text())
    assert manifest["weights"] == weights_hash(world) == reference_weights()[pinned.fingerprint()]
    assert manifest["numerics"] == PINNED  # built in a child process with its numerics pinned
    assert not [line for line in lines if line.startswith("note:")]


@pytest.mark.slow  # builds small worlds: make test, not make check
def test_a_build_that_differs_from_the_reference_says_so_in_one_line(tmp_path, monkeypatch):
    pinned = SMALL.model_copy(update={"pinned": True})
    monkeypatch.setattr(numerics, "reference_weights", lambda: {pinned.fingerprint(): "0" * 64})
    lines: list[str] = []
    ensure_world(tmp_path / "w", pinned, log=lines.append)
    notes = [line for line in lines if line.startswith("note:")]
    assert len(notes) == 1 and "\n" not in notes[0]
    assert "differ from the reference build" in notes[0] and "docs/tiny-world.md" in notes[0]


@pytest.mark.slow  # builds small worlds: make test, not make check
def test_same_seed_builds_the_same_world(tmp_path):
    first = ensure_world(tmp_path / "one", SMALL, log=lambda _: None)
    second = ensure_world(tmp_path / "two", SMALL, log=lambda _: None)
    for skill in SKILLS:
        for split in ("search", "test"):
            assert task_file(first, skill, split).read_bytes() == task_file(second, skill, split).read_bytes()
    one, two = (json.loads((d / "manifest.json").read_text()) for d in (first, second))
    assert one["accuracy"] == two["accuracy"]
    assert one["training"] == two["training"]
    for name in ("base", "math_a", "lang_b"):
        a, b = _tensors(first / "models" / name), _tensors(second / "models" / name)
        assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow  # builds small worlds: make test, not make check
def test_another_seed_builds_another_world(tmp_path):
    first = ensure_world(tmp_path / "one", SMALL, log=lambda _: None)
    other = ensure_world(tmp_path / "two", SMALL.model_copy(update={"seed": 1}), log=lambda _: None)
    assert task_file(first, "facts_b", "test").read_bytes() != task_file(other, "facts_b", "test").read_bytes()


@pytest.mark.slow  # builds small worlds: make test, not make check
def test_two_processes_asking_for_one_world_build_it_once(tmp_path):
    """Parallel test workers, or two demos, ask for the same world at once: one builds it, the other waits for it
    and reuses it (it neither builds a second copy nor replaces the first under its readers)."""
    script = (
        "import sys\n"
        "from mergekit_evo.demo.tiny_world import WorldSpec, ensure_world\n"
        f"spec = WorldSpec.model_validate_json({SMALL.model_dump_json()!r})\n"
        "print(ensure_world(sys.argv[1], spec, log=lambda line: print(line, flush=True)))\n"
    )
    world = tmp_path / "w"
    both = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(world)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=600) for process in both]
    assert [process.returncode for process in both] == [0, 0], outputs
    builds = [out for out, _ in outputs if "trained base" in out]
    assert len(builds) == 1, outputs
    assert all(out.strip().splitlines()[-1] == str(world) for out, _ in outputs)
    assert json.loads((world / "manifest.json").read_text())["fingerprint"] == SMALL.fingerprint()


@pytest.mark.slow  # builds small worlds: make test, not make check
def test_a_matching_world_is_reused_not_rebuilt(tmp_path):
    world = ensure_world(tmp_path / "w", SMALL, log=lambda _: None)
    stamp = (world / "manifest.json").stat().st_mtime_ns
    assert ensure_world(world, SMALL, log=lambda _: None) == world
    assert (world / "manifest.json").stat().st_mtime_ns == stamp


def test_models_load_with_transformers(tiny_world):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for name in ("base", "math_a", "lang_b"):
        model = AutoModelForCausalLM.from_pretrained(tiny_world / "models" / name)
        tokenizer = AutoTokenizer.from_pretrained(tiny_world / "models" / name)
        ids = tokenizer("what is 13 times 12 ? nani wa 3 kakeru 4 ?", return_tensors="pt")["input_ids"]
        assert tokenizer.unk_token_id not in ids[0].tolist()
        assert model(input_ids=ids).logits.shape[-1] == len(tokenizer)
        assert sum(p.numel() for p in model.parameters()) < 8_000_000


def test_mergekit_merges_the_models_as_local_paths(tiny_world, tmp_path):
    config = {
        "merge_method": "linear",
        "dtype": "float32",
        "models": [
            {"model": str(tiny_world / "models" / "math_a"), "parameters": {"weight": 0.25}},
            {"model": str(tiny_world / "models" / "lang_b"), "parameters": {"weight": 0.75}},
        ],
    }
    out = merge_to_disk(parse_merge_config(config), tmp_path / "merged")
    merged, a, b = _tensors(out), _tensors(tiny_world / "models" / "math_a"), _tensors(tiny_world / "models" / "lang_b")
    assert set(merged) == set(a)
    for key in a:
        torch.testing.assert_close(merged[key], 0.25 * a[key] + 0.75 * b[key])


def test_specialists_beat_the_base_on_their_own_skill_only(manifest):
    acc = manifest["accuracy"]
    for specialist, skill in manifest["specialists"].items():
        other = next(s for s in manifest["specialists"].values() if s != skill)
        assert acc[specialist][skill]["mc"] >= acc["base"][skill]["mc"] + 0.3
        assert acc[specialist][other]["mc"] <= acc["base"][other]["mc"] + 0.15


def test_no_input_model_can_do_arithmetic_asked_in_b(manifest):
    # the numbers alone leave three choices (the three operations' results), so reading them gives about 1/3
    acc = manifest["accuracy"]
    for name in ("base", *manifest["specialists"]):
        assert acc[name]["math_b"]["mc"] <= 0.45, name
    assert acc["math_a"]["math_a"]["mc"] >= acc["math_a"]["math_b"]["mc"] + 0.4  # it knows the sums, not the words


def test_the_math_specialist_solves_arithmetic_asked_in_a_and_the_base_does_not(manifest):
    acc = manifest["accuracy"]
    assert acc["math_a"]["math_a"]["mc"] >= 0.8
    assert acc["base"]["math_a"]["mc"] <= 0.45


def _operator_word_items() -> list[Item]:
    """B's operator words outside arithmetic: the word after one (asked in B) and the A-B word pairs both ways."""
    words_a = list(OPERATIONS)
    words_b = translate(words_a, "b")
    asked = []
    for i, word in enumerate(words_b):
        following = (i + 1) % len(words_b)
        asked.append((translate(["what", "is", "the", "word", "after"], "b") + [word, "?"], words_b, following))
        asked.append(([words_a[i], "in", "b", "means"], words_b, i))
        asked.append(([word, "de", "ei", "imi"], words_a, i))
    return [
        Item(id=f"op-{n}", prompt=" ".join(p), choices=tuple(c), answer=a, target=c[a])
        for n, (p, c, a) in enumerate(asked)
    ]


def test_the_language_specialist_knows_b_operator_words_and_the_others_do_not(tiny_world):
    items = _operator_word_items()
    scores = {}
    for name in ("base", "math_a", "lang_b"):
        loaded = load_model(tiny_world / "models" / name, "float32")
        scores[name] = float(score_items(loaded.model, loaded.tokenizer, items, "mc").mean())
    assert scores["lang_b"] >= 8 / 9, scores
    assert scores["lang_b"] >= max(scores["base"], scores["math_a"]) + 0.3, scores


def test_plain_merges_keep_the_language_skill_and_lose_most_of_the_math_one(manifest):
    # world v4: the language specialist's task vector is the larger (four times the learning rate), so a plain merge,
    # one weight per model, keeps B but loses most of the math specialist's own skill; per-layer weights can do better
    acc = manifest["accuracy"]
    for merge in ("merge:task_arithmetic_1.0", "merge:linear_0.5"):
        assert acc[merge]["facts_b"]["mc"] >= acc["lang_b"]["facts_b"]["mc"] - 0.1, merge
        assert acc[merge]["math_a"]["mc"] <= acc["math_a"]["math_a"]["mc"] - 0.25, merge


def test_manifest_accuracies_come_from_running_the_models(tiny_world, manifest):
    assert evaluate_model(tiny_world / "models" / "lang_b", tiny_world) == manifest["accuracy"]["lang_b"]


def test_item_files_hold_both_modes_and_disjoint_splits(tiny_world):
    for skill in SKILLS:
        search, test = (read_items(task_file(tiny_world, skill, s), "mc") for s in ("search", "test"))
        assert len(search) >= 100 and len(test) >= 100
        assert not {i.id for i in search} & {i.id for i in test}
        assert all(i.target == i.choices[i.answer] for i in search + test)


def test_lm_eval_yamls_read_the_same_item_files(tiny_world):
    folder = tiny_world / "tasks" / "lm_eval"
    tasks = {p.stem: yaml.safe_load(p.read_text()) for p in folder.glob("*.yaml")}
    assert len(tasks) == len(SKILLS) * 2 * 2
    for name, task in tasks.items():
        data = Path(task["dataset_kwargs"]["data_files"]["test"])
        assert data.is_file(), name
        assert task["task"] == name


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mergekit_evo", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--hidden", "-4"], "--hidden"),
        (["--items-per-skill", "0"], "--items-per-skill"),
    ],
)
def test_bad_sizes_give_a_one_line_error(tmp_path, args, words):
    result = _cli("tiny-world", "build", str(tmp_path / "w"), *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0]


def test_an_unwritable_directory_gives_a_one_line_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = _cli("tiny-world", "build", str(blocker / "world"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "not writable" in result.stderr


def test_the_default_world_s_seed_is_a_setting_of_the_environment(monkeypatch):
    from mergekit_evo.demo.tiny_world.build import default_world_seed
    from mergekit_evo.plugin.errors import UserError

    monkeypatch.delenv("MERGEKIT_EVO_WORLD_SEED", raising=False)
    assert default_world_seed() == 0
    monkeypatch.setenv("MERGEKIT_EVO_WORLD_SEED", "3")
    assert default_world_seed() == 3
    monkeypatch.setenv("MERGEKIT_EVO_WORLD_SEED", "three")
    with pytest.raises(UserError, match="MERGEKIT_EVO_WORLD_SEED"):
        default_world_seed()


def test_the_build_command_s_help_gives_the_world_s_own_defaults():
    from helpers import cli_here

    text = " ".join(cli_here("tiny-world", "build", "--help").stdout.split())
    said = dict(re.findall(r"--([a-z-]+) INTEGER .*?\[default: (\d+)\]", text))
    assert len(said) == 8
    for flag, value in said.items():
        assert WorldSpec.model_fields[flag.replace("-", "_")].default == int(value), flag
    assert WorldSpec().pinned  # the reference numerics unless --unpinned
