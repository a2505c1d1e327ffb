"""The cost of one candidate in mergekit-evo against the pipeline mergekit-evolve runs per candidate, measured in one
run on the same models, tasks, items and genomes.

mergekit-evolve (its on-disk evaluator, the default): mergekit `run_merge` into a folder, then lm-eval's
`simple_evaluate` with `model="hf"` on that folder (a fresh transformers load each time), its task index built once
per worker. mergekit-evo: the resident merger (sources loaded once; each candidate merged in memory by mergekit's
own tasks) scoring (a) every item, as mergekit-evolve does, with the lm-eval backend on the model object and with the
native backend on the same items (the tiny world's lm-eval YAMLs read the same JSONL files), and (b) 20 items per
task with the native backend, what the IRT estimator at 20 anchors scores per candidate. IRT also pays once for its calibration
(the input models and `calibration` merges scored on every item); the table spreads that over a run of `--budget`
candidates.

    python benchmarks/vs_mergekit_evolve.py                 # 6 candidates each way, the tiny world
    python benchmarks/vs_mergekit_evolve.py --candidates 10 --budget 200

The first candidate of each way is a warm-up (it loads the sources, builds caches) and is left out of the means.
Both ways score the same tensors with the same lm-eval code, so their accuracies must agree: the table says so.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TASKS = ("tiny_math_a_mc_search", "tiny_facts_b_mc_search")
BATCH = 64


def _config(world: Path):
    from mergekit_evo.config import parse_config
    from mergekit_evo.demo.configs import two_skill_config

    data = two_skill_config(world, 8)
    include = [str(world / "tasks" / "lm_eval")]
    data["tasks"] = [
        {"name": name, "backend": "lm-eval", "options": {"task": name, "include_path": include}} for name in TASKS
    ]
    return parse_config(data)


def mergekit_evolve_way(merge_yaml: str, manager, scratch: Path) -> tuple[float, dict[str, float]]:
    """What mergekit-evolve does per candidate: merge to disk, then lm-eval loads the folder and evaluates it."""
    import lm_eval
    import torch
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    from mergekit_evo.merge.base import parse_merge_config

    started = time.perf_counter()
    out = Path(tempfile.mkdtemp(dir=scratch))
    options = MergeOptions(cuda=False, copy_tokenizer=True, quiet=True, out_shard_size=1_000_000_000_000)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        run_merge(parse_merge_config(merge_yaml), str(out), options=options)
        results = lm_eval.simple_evaluate(
            model="hf",
            model_args={"pretrained": str(out), "dtype": "float32"},
            tasks=list(TASKS),
            task_manager=manager,
            log_samples=False,
            verbosity="WARNING",
            bootstrap_iters=0,
            batch_size=BATCH,  # as `--batch-size 64` would; our tasks score at their batch_size, 64 by default
            device="cuda" if torch.cuda.is_available() else "cpu",
        )
    seconds = time.perf_counter() - started
    return seconds, {name: float(results["results"][name]["acc,none"]) for name in TASKS}


def _timed(worker, job) -> tuple[float, dict[str, float]]:
    """A candidate's seconds in the worker (merge and scoring) and its accuracy per task."""
    outcome = worker.run(job)
    assert outcome.scores is not None, outcome.error
    worker.release()
    return outcome.seconds, {name: float(np.mean(s)) for name, s in outcome.scores.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=6)
    parser.add_argument("--anchors", type=int, default=20)
    parser.add_argument("--calibration", type=int, default=16, help="the IRT plugin's default")
    parser.add_argument(
        "--budget", type=int, default=200, help="candidates in the run IRT's calibration is spread over"
    )
    parser.add_argument("--world", type=Path)
    args = parser.parse_args(argv)

    import transformers
    from lm_eval.tasks import TaskManager

    from mergekit_evo.config import parse_config
    from mergekit_evo.demo.configs import two_skill_config
    from mergekit_evo.demo.tiny_world import ensure_world
    from mergekit_evo.merge.resident import ResidentMerger
    from mergekit_evo.plugin.manager import registry
    from mergekit_evo.run.executors import Job, Worker, build_tasks
    from mergekit_evo.space.genome import GenomeSpace

    transformers.utils.logging.set_verbosity_error()
    logging.getLogger("lm-eval").setLevel(logging.ERROR)
    world = args.world or ensure_world()
    config = _config(world)
    genome = GenomeSpace(config)
    rng = np.random.default_rng(0)
    recipes = [genome.to_yaml(rng.random(genome.dim)) for _ in range(args.candidates)]

    manager = TaskManager(include_path=[str(world / "tasks" / "lm_eval")], include_defaults=False)  # once per worker
    theirs: list[tuple[float, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for recipe in recipes:
            theirs.append(mergekit_evolve_way(recipe, manager, Path(scratch)))

    backend = registry().get("task_backends", "lm-eval", "tasks")
    worker = Worker(ResidentMerger(config=config), build_tasks(config, {name: backend for name in TASKS}))
    every = {name: list(range(len(task.item_ids))) for name, task in worker.tasks.items()}
    ours_all = [_timed(worker, Job(i, recipe, 0, every)) for i, recipe in enumerate(recipes)]
    # the native backend on the same items (the lm-eval YAMLs read the world's JSONL files): the same answers
    native_config = parse_config(two_skill_config(world, 8))
    native = registry().get("task_backends", "native", "tasks")
    worker = Worker(
        ResidentMerger(config=native_config), build_tasks(native_config, {t.name: native for t in native_config.tasks})
    )
    renamed = dict(zip(TASKS, worker.tasks))  # lm-eval task name -> the native task scoring the same file
    every = {renamed[name]: indices for name, indices in every.items()}
    few = {name: sorted(rng.choice(len(ids), args.anchors, replace=False).tolist()) for name, ids in every.items()}
    native_all = [_timed(worker, Job(i, recipe, 0, every)) for i, recipe in enumerate(recipes)]
    ours_few = [_timed(worker, Job(i, recipe, 0, few))[0] for i, recipe in enumerate(recipes)]
    native_all = [(s, {name: acc[renamed[name]] for name in TASKS}) for s, acc in native_all]

    agree = all(
        abs(mine[1][n] - other[1][n]) < 1e-9
        for way in (ours_all, native_all)
        for mine, other in zip(way, theirs)
        for n in TASKS
    )  # task arithmetic has no random seed: the same tensors either way
    their = statistics.mean(s for s, _ in theirs[1:])
    through_lm_eval = statistics.mean(s for s, _ in ours_all[1:])
    full = statistics.mean(s for s, _ in native_all[1:])
    anchors = statistics.mean(ours_few[1:])
    calibration = (3 + args.calibration) * full  # the inputs and the calibration merges, every item
    amortized = anchors + calibration / args.budget
    items = sum(len(v) for v in every.values())
    print(f"{len(recipes) - 1} candidates each way after a warm-up; {items} items over {len(TASKS)} lm-eval tasks\n")
    print("| per candidate | seconds | vs mergekit-evolve |")
    print("| --- | ---: | ---: |")
    print(f"| mergekit-evolve's pipeline (run_merge to disk, fresh load, lm-eval) | {their:.2f} | 1.00x |")
    print(
        f"| mergekit-evo, resident merger, lm-eval backend, every item | {through_lm_eval:.2f} | "
        f"{their / through_lm_eval:.1f}x faster |"
    )
    print(f"| mergekit-evo, resident merger, native backend, every item | {full:.2f} | {their / full:.1f}x faster |")
    print(
        f"| mergekit-evo, resident merger, native backend, IRT at {args.anchors} anchors/task | {anchors:.2f} | "
        f"{their / anchors:.1f}x faster |"
    )
    print(
        f"| the same with IRT's calibration ({3 + args.calibration} full scorings) spread over {args.budget} "
        f"candidates | {amortized:.2f} | {their / amortized:.1f}x faster |"
    )
    print(f"\nsame accuracy both ways on every candidate and task: {'yes' if agree else 'NO'}")


if __name__ == "__main__":
    main()
