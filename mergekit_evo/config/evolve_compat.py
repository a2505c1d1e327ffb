"""mergekit-evolve, translated: its config file (so its users bring the files they have) and its command line
(`mergekit-evo evolve`, a drop-in for the deprecated `mergekit-evolve`).

mergekit-evolve keeps the models under `genome:` and its tasks are lm-eval tasks with a `weight` and a `metric`;
`parse_config` calls `from_mergekit_evolve` when it sees that shape. `evolve_flags` maps its flags onto our config:
the Ray executor (its `pool`/`buffered` strategies) or the local one (`serial`), the resident merger (bitwise
`mergekit-yaml`, so `--in-memory` is always on), and the CMA-ES optimizer it used. A flag we cannot honour is
refused in one line rather than ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mergekit_evo.plugin.errors import UserError

_DENSITY_METHODS = {"ties", "dare_ties", "dare_linear", "breadcrumbs", "breadcrumbs_ties", "della", "della_linear"}


def from_mergekit_evolve(data: dict) -> dict:
    """Translate mergekit-evolve's config (`genome:` with models, `tasks:` with lm-eval tasks) to ours."""
    genome = data["genome"]
    if genome.get("tokenizer_source"):
        raise UserError("genome.tokenizer_source: mergekit-evolve's tokenizer_source is not translated yet; remove it")
    if data.get("random_init"):
        raise UserError("random_init: not supported; remove it (the search starts from equal weights, as by default)")
    allow_negative = bool(genome.get("allow_negative_weights", False))
    parameters: dict[str, Any] = {"weight": {"min": -1.0 if allow_negative else 0.0, "max": 1.0}}
    method = genome.get("merge_method", "ties")
    if method in _DENSITY_METHODS:
        parameters["density"] = {"min": 0.0, "max": 1.0}
    if "normalize" in genome:
        parameters["normalize"] = bool(genome["normalize"])
    shared = {k: data[k] for k in ("limit", "num_fewshot", "apply_chat_template") if data.get(k) is not None}
    result = {
        "models": list(genome["models"]),
        "base_model": genome.get("base_model"),
        "merge_method": method,
        "genome": {
            "parameters": parameters,
            "layer_groups": _layer_groups(genome),
            # mergekit-evolve's default is a value per block of layers; ours interpolates unless told not to
            "smooth": bool(genome.get("smooth", False)),
            "filters": list(genome.get("filters") or []),
        },
        "tasks": [_task(t, shared) for t in data.get("tasks", [])],
    }
    for key in ("seed", "run_dir"):
        if key in data:
            result[key] = data[key]
    return result


def _layer_groups(genome: dict) -> int | str:
    """mergekit-evolve's `layer_granularity` (layers per group; 0: one group) as our count of layer groups."""
    granularity = int(genome.get("layer_granularity") or 0)
    if granularity <= 0:
        return 1
    if granularity == 1:
        return "per_layer"
    from mergekit_evo.model_files import num_layers

    layers = num_layers(str(genome["models"][0]))
    if layers is None:
        raise UserError(
            f"genome.layer_granularity: {granularity} needs the layer count, and {genome['models'][0]} has no local "
            "config.json; use a local model folder, or layer_granularity 1"
        )
    if layers % granularity:
        raise UserError(
            f"genome.layer_granularity: {granularity} does not divide the model's {layers} layers; use a divisor"
        )
    return layers // granularity


def _task(task: str | dict, shared: dict[str, Any]) -> dict:
    """One of mergekit-evolve's tasks (a name, or name/weight/metric) as an lm-eval task of ours."""
    task = {"name": task} if isinstance(task, str) else task
    options: dict[str, Any] = dict(shared)
    metric = task.get("metric")
    if metric:  # mergekit-evolve writes lm-eval's "metric,filter" key, e.g. "acc,none"
        name, _, filter_name = str(metric).partition(",")
        options["metric"] = name
        if filter_name and filter_name != "none":
            options["filter"] = filter_name
    return {"name": task["name"], "backend": "lm-eval", "weight": task.get("weight", 1.0), "options": options}


@dataclass
class EvolveFlags:
    """mergekit-evolve's command line, as `mergekit-evo evolve` takes it (its defaults kept)."""

    storage_path: Path
    max_fevals: int = 100
    strategy: str = "pool"
    num_gpus: int | None = None
    in_memory: bool = False
    vllm: bool = False
    merge_cuda: bool | None = None  # None: not given (mergekit-evolve's default is on; ours is: where there is one)
    trust_remote_code: bool = False
    allow_crimes: bool = False
    random_seed: int = 0
    batch_size: int | None = None
    sigma0: float = 1 / 6
    wandb: bool = False
    wandb_project: str | None = None
    wandb_entity: str | None = None
    task_search_path: tuple[str, ...] = ()
    save_final_model: bool = True
    reshard: bool = True
    timeout: float | None = None
    force_population_size: int | None = None
    mapped: list[str] = field(default_factory=list)


def cma_population(dim: int) -> int:
    """CMA-ES's own default population for `dim` genes (what mergekit-evolve ran with): 4 + floor(3 ln dim)."""
    return 4 + int(3 * math.log(max(dim, 1)))


def evolve_flags(data: dict, flags: EvolveFlags, gpus: int) -> dict:
    """Our config (as a mapping, translated from mergekit-evolve's file) with mergekit-evolve's flags applied;
    `flags.mapped` gets one short phrase per flag saying what it became. `gpus`: how many CUDA devices are here."""
    refused = [
        ("--trust-remote-code", flags.trust_remote_code, "models load without remote code; drop the flag"),
        ("--allow-crimes", flags.allow_crimes, "recipes are checked as mergekit checks them; drop the flag"),
    ]
    for flag, given, why in refused:
        if given:
            raise UserError(f"{flag}: not supported by mergekit-evo evolve: {why}")
    mapped = flags.mapped
    data = {**data, "seed": flags.random_seed, "write_best_model": flags.save_final_model}
    if flags.wandb:
        wandb_options = {"project": flags.wandb_project, "entity": flags.wandb_entity}
        data["observers"] = [{"name": "wandb", "options": {k: v for k, v in wandb_options.items() if v}}]
        mapped.append("--wandb -> the wandb observer (mergekit-evo-wandb)")
    data["budget"] = {"max_evaluations": flags.max_fevals, **({"max_seconds": flags.timeout} if flags.timeout else {})}
    mapped.append(f"--max-fevals {flags.max_fevals} -> budget.max_evaluations")
    if flags.timeout:
        mapped.append("--timeout -> budget.max_seconds")
    mapped.append(f"--random-seed {flags.random_seed} -> seed")
    data["optimizer"] = {"name": "cma", "options": {"sigma0": flags.sigma0}}
    if flags.force_population_size:
        data["optimizer"]["population"] = flags.force_population_size
    mapped.append(f"--sigma0 {flags.sigma0:.4g} -> CMA-ES sigma0")
    if flags.strategy == "serial":
        data["executor"] = {"name": "local"}
        mapped.append("--strategy serial -> the local executor")
    else:
        per_gpu = flags.num_gpus is not None or gpus > 0
        options: dict[str, Any] = {"num_gpus": 1} if per_gpu else {}
        if flags.num_gpus is not None:
            options["workers"] = flags.num_gpus
        data["executor"] = {"name": "ray", "options": options}
        each = "one GPU each" if per_gpu else "one CPU each"
        count = f"{flags.num_gpus} workers" if flags.num_gpus is not None else "a worker per free " + each.split()[1]
        mapped.append(f"--strategy {flags.strategy} -> the Ray executor, {count}, {each}")
    device = {None: "auto", True: "cuda", False: "cpu"}[flags.merge_cuda]
    data["merger"] = {"name": "resident", "options": {"device": device}}
    mapped.append(f"--in-memory -> the resident merger on {device} (always in memory; tensors equal mergekit-yaml's)")
    tasks = []
    for task in data["tasks"]:
        options = dict(task.get("options", {}))
        if flags.task_search_path:
            options["include_path"] = [str(Path(p).resolve()) for p in flags.task_search_path]
        if flags.vllm:
            options["model"] = "vllm"
        task = {**task, "options": options}
        if flags.batch_size:
            task["batch_size"] = flags.batch_size
        tasks.append(task)
    data["tasks"] = tasks
    if flags.task_search_path:
        mapped.append("--task-search-path -> each task's include_path")
    if flags.vllm:
        mapped.append("--vllm -> lm-eval's vllm model")
    if flags.batch_size:
        mapped.append("--batch-size -> each task's batch_size")
    if not flags.reshard:
        mapped.append("--no-reshard: models are read as they are either way")
    return data
