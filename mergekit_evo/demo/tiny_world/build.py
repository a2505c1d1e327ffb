"""Build the tiny world: tokenizer, base, specialists, item sets, lm-eval YAMLs, reference merges and a manifest.

Everything is derived from a `WorldSpec` and its seed, so a world can be rebuilt bit for bit, and a directory whose
manifest matches the spec is reused instead of rebuilt (tests and the demo share one build).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

import mergekit_evo.demo.tiny_world.language as language
from mergekit_evo.demo.tiny_world.items import skill_splits, task_file, write_lm_eval_yamls
from mergekit_evo.demo.tiny_world.numerics import PINNED, reference_notice, weights_hash
from mergekit_evo.demo.tiny_world.spec import (
    WORLD_FORMAT,
    WorldSpec,
    default_cache_dir,
    default_world_pinned,
    default_world_seed,
)
from mergekit_evo.demo.tiny_world.training import build_model, build_tokenizer, train
from mergekit_evo.merge.base import load_model, merge_to_disk, parse_merge_config
from mergekit_evo.plugin.errors import UserError
from mergekit_evo.scoring.items import read_items, write_items
from mergekit_evo.scoring.native import score_items

MODES = ("mc", "gen")
SPECIALISTS = {"math_a": "math_a", "lang_b": "facts_b"}


def _mixture(parts: list[tuple[language.Sampler, int]]) -> Callable[[np.random.Generator, int], list[str]]:
    """A batch sampler drawing each sentence from one of `parts`, chosen in proportion to its share."""
    samplers = [sampler for sampler, share in parts for _ in range(share)]

    def sample(rng: np.random.Generator, n: int) -> list[str]:
        return [samplers[int(rng.integers(len(samplers)))](rng) for _ in range(n)]

    return sample


# ---------------------------------------------------------------------------------------------- evaluation


def evaluate_model(model_dir: Path, world: Path, split: str = "test") -> dict[str, dict[str, float]]:
    """Accuracy of one saved model on every skill and mode of a split: {skill: {mode: accuracy}}."""
    loaded = load_model(model_dir, "float32")
    result = {}
    for skill in language.SKILLS:
        result[skill] = {
            mode: float(
                score_items(
                    loaded.model, loaded.tokenizer, read_items(task_file(world, skill, split), mode), mode
                ).mean()
            )
            for mode in MODES
        }
    return result


REFERENCE_MERGES = {
    "task_arithmetic_1.0": {"merge_method": "task_arithmetic", "weights": (1.0, 1.0)},
    "linear_0.5": {"merge_method": "linear", "weights": (0.5, 0.5)},
}


def reference_merge_config(world: Path, name: str) -> dict:
    spec = REFERENCE_MERGES[name]
    config = {
        "merge_method": spec["merge_method"],
        "dtype": "float32",
        "models": [
            {"model": str(world / "models" / m), "parameters": {"weight": w}}
            for m, w in zip(SPECIALISTS, spec["weights"])
        ],
    }
    if spec["merge_method"] != "linear":
        config["base_model"] = str(world / "models" / "base")
    return config


# ---------------------------------------------------------------------------------------------- the build


def _check_writable(directory: Path) -> None:
    probe = directory.absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise UserError(f"cannot write the tiny world to {directory}: {probe} is not writable; choose another DIR")


def load_manifest(directory: Path) -> dict | None:
    path = Path(directory) / "manifest.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def world_manifest(directory: Path) -> dict:
    """The manifest of a built world, as `ensure_world` leaves it; a folder without one is told to be rebuilt."""
    manifest = load_manifest(directory)
    if manifest is None:
        raise UserError(f"{directory} holds no readable manifest.json; rebuild the world there with --force")
    return manifest


def ensure_world(
    directory: Path | None = None,
    spec: WorldSpec | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """Return a built world at `directory` (default: the cache), building it only when no matching one is there.
    Without a `spec`, the default world of the seed `MERGEKIT_EVO_WORLD_SEED` names (0 when unset), so the whole
    test suite and the demo can run on another world: `MERGEKIT_EVO_WORLD_SEED=3 make test`, unpinned with
    `MERGEKIT_EVO_WORLD_PINNED=0`."""
    spec = spec or WorldSpec(seed=default_world_seed(), pinned=default_world_pinned())
    directory = Path(directory) if directory else default_cache_dir() / spec.fingerprint()
    if not force and _matches(load_manifest(directory), spec):
        return directory
    _check_writable(directory)
    with _building(directory, log):  # a second process asking for the same world waits for the first one's build
        manifest = load_manifest(directory)  # read again: the process it waited for may have built it
        if not force and _matches(manifest, spec):
            return directory
        if directory.exists() and not force and manifest is None and any(directory.iterdir()):
            raise UserError(f"{directory} exists and is not a tiny world; choose an empty or new DIR (or pass --force)")
        build_world(directory, spec, log)
    return directory


def _matches(manifest: dict | None, spec: WorldSpec) -> bool:
    return manifest is not None and manifest.get("fingerprint") == spec.fingerprint()


@contextlib.contextmanager
def _building(directory: Path, log: Callable[[str], None]) -> Iterator[None]:
    """Held while a world is built into `directory`: an flock on a sibling file, given up with the process, so
    parallel test workers or two demos never build one world twice nor replace it under a reader."""
    path = directory.absolute().with_name(directory.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another process is building {directory}; waiting for it")
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        yield


def build_world(directory: Path, spec: WorldSpec, log: Callable[[str], None] = print) -> dict:
    """Build into a temporary sibling and rename it into place, so a killed build never leaves a half world."""
    directory = Path(directory).absolute()
    staging = directory.with_name(directory.name + f".building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        manifest = _build_in_child(staging, directory, spec, log)
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _build_in_child(staging: Path, final: Path, spec: WorldSpec, log: Callable[[str], None]) -> dict:
    """`build_into` in a child process, its numerics pinned when the spec asks (numerics.py: this process's torch
    has picked its kernels already), then the weights' hash checked against the reference build's."""
    command = [
        sys.executable,
        "-m",
        "mergekit_evo.demo.tiny_world.build_child",
        str(staging),
        str(final),
        spec.model_dump_json(),
    ]
    env = {**os.environ, **(PINNED if spec.pinned else {})}
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        for line in child.stdout:
            log(line.rstrip("\n"))
    if child.returncode != 0:
        raise RuntimeError(f"the tiny-world build failed (exit status {child.returncode}); its error is above")
    manifest = load_manifest(staging)
    assert manifest is not None
    notice = reference_notice(manifest)
    if notice:
        log(notice)
    return manifest


def _measure(staging: Path, final: Path) -> tuple[dict, dict]:
    """The trained models' accuracies, and the reference merges built and measured (their recipes name `final`)."""
    accuracy = {}
    for name in ["base", *SPECIALISTS]:
        accuracy[name] = evaluate_model(staging / "models" / name, staging)
    merges = {}
    for name in REFERENCE_MERGES:
        config = reference_merge_config(staging, name)
        out = staging / "merges" / name
        merge_to_disk(parse_merge_config(config), out)
        accuracy[f"merge:{name}"] = evaluate_model(out, staging)
        merges[name] = reference_merge_config(final, name)
        (out / "mergekit_config.yml").write_text(yaml.safe_dump(merges[name], sort_keys=False))
    return accuracy, merges


def build_into(staging: Path, final: Path, spec: WorldSpec, log: Callable[[str], None]) -> dict:
    """Build the world into `staging`, its files naming `final`; `_build_in_child` runs it in a child process."""
    started = time.time()
    rng = np.random.default_rng(spec.seed)
    facts = language.facts_table(rng)

    speaks = language.operator_speakers(rng)

    # Items are written with paths of the final directory (lm-eval YAMLs hold absolute paths).
    for skill, splits in skill_splits(spec, facts).items():
        for split, items in splits.items():
            write_items(task_file(staging, skill, split), items)
    write_lm_eval_yamls(staging, data_root=final)

    tokenizer = build_tokenizer(language.vocabulary())
    corpora = {name: _mixture(parts) for name, parts in language.corpora(facts, speaks).items()}

    training = {}

    def run_training(name: str, model, steps: int, lr: float, seed: int) -> None:
        bar = tqdm(total=steps, desc=f"train {name}", leave=False, disable=None)

        def on_step(step: int, loss: float) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")

        result = train(
            model,
            tokenizer,
            corpora[name],
            steps,
            lr,
            seed,
            spec.batch_size,
            on_step=on_step,
        )
        bar.close()
        training[name] = {"steps": result.steps, "first_loss": result.first_loss, "final_loss": result.final_loss}
        model.save_pretrained(staging / "models" / name)
        tokenizer.save_pretrained(staging / "models" / name)
        log(f"trained {name}: loss {result.first_loss:.3f} -> {result.final_loss:.3f}")

    base = build_model(tokenizer, spec.hidden, spec.layers, spec.seed)
    run_training("base", base, spec.base_steps, spec.base_lr, spec.seed)
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    steps = {"math_a": spec.specialist_steps, "lang_b": spec.language_steps}
    rates = {"math_a": spec.specialist_lr, "lang_b": spec.language_lr}
    for offset, name in enumerate(SPECIALISTS, start=1):
        base.load_state_dict(base_state)
        run_training(name, base, steps[name], rates[name], spec.seed + offset)

    accuracy, merges = _measure(staging, final)
    n_params = sum(p.numel() for p in base.parameters())
    manifest = {
        "format": WORLD_FORMAT,
        "fingerprint": spec.fingerprint(),
        "spec": spec.model_dump(),
        "parameters": n_params,
        "vocabulary_size": len(tokenizer),
        "skills": language.SKILL_DESCRIPTIONS,
        "specialists": SPECIALISTS,
        "objective": list(SPECIALISTS.values()),
        "training": training,
        "accuracy": accuracy,
        "reference_merges": merges,
        "build_seconds": round(time.time() - started, 1),
        "numerics": {name: os.environ.get(name) for name in PINNED},
        "weights": weights_hash(staging),
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def objective(scores: dict[str, dict[str, float]], skills: list[str], mode: str = "mc") -> float:
    """The combined objective: the mean accuracy over the specialists' skills."""
    return float(np.mean([scores[s][mode] for s in skills]))


def format_table(manifest: dict, split_note: str = "held-out test split") -> str:
    skills = list(language.SKILLS)
    target = manifest["objective"]
    lines = [
        f"tiny world {manifest['fingerprint']}: {manifest['parameters']:,} parameters per model, "
        f"built in {manifest['build_seconds']} s; accuracy on the {split_note}, multiple choice (generation)",
        f"{'model':<28}" + "".join(f"{s:>16}" for s in skills) + f"{'objective':>16}",
    ]
    for name, scores in manifest["accuracy"].items():
        cells = "".join(f"{scores[s]['mc']:>9.2f} ({scores[s]['gen']:.2f})" for s in skills)
        obj = f"{objective(scores, target):>9.2f} ({objective(scores, target, 'gen'):.2f})"
        lines.append(f"{name:<28}{cells}{obj}")
    lines.append(f"objective = mean of {', '.join(target)}")
    return "\n".join(lines)
