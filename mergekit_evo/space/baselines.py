"""The plain merges an evolved merge must beat: mergekit recipes a user would have written without a search.

A search is only worth its cost if its result beats what one line of mergekit gives. By default every run scores
its start point (the recipe it searched from), its own method at mergekit's defaults (weight 1 for each model, and
density 0.5 for the methods that sparsify, as their papers suggest) and, where they differ from it, linear with
equal weights and task arithmetic with weight 1. `baselines:` in the config replaces that list with the user's own.
"""

from __future__ import annotations

from mergekit_evo.config import EvolveConfig
from mergekit_evo.merge.base import load_recipe
from mergekit_evo.mergekit_api import method as mergekit_method
from mergekit_evo.space.dataflow import DataFlowSpace
from mergekit_evo.space.genome import GenomeSpace

SPARSIFYING = {"ties", "dare_ties", "dare_linear", "breadcrumbs", "breadcrumbs_ties", "della", "della_linear"}


def plain_recipe(config: EvolveConfig, method: str, fixed: dict[str, object]) -> dict | None:
    """`method` over the config's models at mergekit's defaults, or None when it needs a value with no default."""
    spec = mergekit_method(method)
    if spec.needs_base and not config.base_model:
        return None
    if spec.max_inputs and len(config.models) > spec.max_inputs:
        return None  # passthrough: one model per slice
    per_model: dict[str, object] = {}
    shared: dict[str, object] = {}
    for p in spec.parameters:
        target = per_model if p.per_model else shared
        if p.name in fixed and method in config.methods():
            target[p.name] = fixed[p.name]
        elif p.name == "weight":
            target[p.name] = 1.0  # linear normalises by default: equal weights
        elif p.name == "density" and method in SPARSIFYING:
            target[p.name] = 0.5
        elif p.name == "t":
            target[p.name] = 0.5
        elif p.required:
            return None
    data: dict = {
        "merge_method": method,
        "models": [{"model": ref, **({"parameters": dict(per_model)} if per_model else {})} for ref in config.models],
    }
    if config.base_model and spec.takes_base:
        data["base_model"] = config.base_model
    if shared:
        data["parameters"] = shared
    if config.dtype:
        data["dtype"] = config.dtype
    return data


def default_baselines(config: EvolveConfig, genome: GenomeSpace | DataFlowSpace) -> dict[str, dict]:
    """name -> mergekit recipe: the start point, then the plain recipes described in the module docstring."""
    start = genome.initial_point()
    out = {"start point": genome.to_dict(start)}
    if isinstance(genome, DataFlowSpace) and genome.merged_recipes:  # PS+DFS: the parameter-space merge alone
        if genome.layer_count(start) == genome.source_layers[0]:
            del out["start point"]  # the first merged source as it is: the same model as its own baseline below
        out.update({f"{name} (merged source)": merged for name, merged in genome.merged_recipes.items()})
    methods = [*config.methods(), "linear"] + (["task_arithmetic"] if config.base_model else [])
    for method in dict.fromkeys(methods):
        recipe = plain_recipe(config, method, genome.fixed)
        if recipe is None:
            continue
        described = {"weight": "weight 1", "density": "density 0.5", "t": "t 0.5"}
        values = recipe["models"][0].get("parameters", {}) | recipe.get("parameters", {})
        label = ", ".join(described[k] for k in described if k in values) if method != "linear" else "equal weights"
        out[f"{method} ({label})" if label else method] = recipe
    return out


def configured_baselines(config: EvolveConfig, genome: GenomeSpace | DataFlowSpace) -> dict[str, dict]:
    """The run's baselines as name -> recipe, each checked by mergekit's own config model."""
    if config.baselines is None:
        return default_baselines(config, genome)
    return {b.name: load_recipe(b.recipe, f"baselines[{i}].recipe") for i, b in enumerate(config.baselines)}
