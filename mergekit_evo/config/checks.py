"""What a config says that must hold on this machine, checked before any model is loaded: the model folders are
there, and mergekit has the method and takes the evolved parameters."""

from __future__ import annotations

import os
from pathlib import Path

from mergekit_evo.config.schema import Bounds, EvolveConfig
from mergekit_evo.plugin.errors import UserError, close_matches


def _is_hub_id(ref: str) -> bool:
    parts = ref.split("/")
    return len(parts) == 2 and all(parts) and not ref.startswith((".", "~", "/"))


def check_models(config: EvolveConfig) -> None:
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    for field, ref in config.labelled_inputs():
        path = Path(ref)
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise UserError(f"{field}: {ref} is a folder but holds no config.json; point it at a saved model")
            continue
        if _is_hub_id(ref) and not offline:
            continue
        raise UserError(
            f"{field}: {ref} is not a local model folder"
            + (" (and the hub is offline: HF_HUB_OFFLINE is set)" if _is_hub_id(ref) else "")
        )


def check_method(config: EvolveConfig) -> None:
    from mergekit_evo import mergekit_api

    known = mergekit_api.method_names()
    methods = config.methods()
    for method in methods:
        if method not in known:
            raise UserError(f"merge_method: mergekit has no method {method!r}; {close_matches(method, known)}")
    if config.genome.dfs is not None:
        check_data_flow(config)
        return
    if "passthrough" in methods:
        raise UserError(
            "merge_method: passthrough stacks layers; evolve its path with `genome.dfs: {}` (data-flow search)"
        )
    specs = {m: mergekit_api.method(m) for m in methods}
    accepted = list(dict.fromkeys(p.name for spec in specs.values() for p in spec.parameters))
    which = methods[0] if len(methods) == 1 else "none of " + ", ".join(methods)
    for name in config.genome.parameters:
        if name not in accepted:
            raise UserError(
                f"genome.parameters.{name}: {which} takes no parameter {name!r}; {close_matches(name, accepted)}"
            )
    for method, spec in specs.items():
        required = [p.name for p in spec.parameters if p.required and p.name not in config.genome.parameters]
        if required:
            raise UserError(
                f"genome.parameters: {method} needs {', '.join(required)}; "
                f"add e.g. `{required[0]}: {{min: 0.0, max: 1.0}}`"
            )
        if spec.needs_base and not config.base_model:
            raise UserError(f"base_model: {method} needs a base model; add `base_model: PATH`")
        n_inputs = len(set(config.models) | ({config.base_model} if config.base_model else set()))
        if n_inputs < spec.min_inputs or (spec.max_inputs and n_inputs > spec.max_inputs):
            allowed = f"{spec.min_inputs}" + (f" to {spec.max_inputs}" if spec.max_inputs else " or more")
            raise UserError(f"models: {method} takes {allowed} input models (base included), got {n_inputs}")


def check_data_flow(config: EvolveConfig) -> None:
    """A data-flow genome stacks whole layers: passthrough is its method, and it evolves no mergekit parameter."""
    if config.methods() != ["passthrough"]:
        raise UserError(
            "merge_method: a data-flow genome (genome.dfs) is emitted as `passthrough`; set merge_method: passthrough"
        )
    evolved = [name for name, v in config.genome.parameters.items() if isinstance(v, Bounds)]
    if evolved or config.genome.filters or config.genome.initial:
        what = "parameters" if evolved else "filters" if config.genome.filters else "initial"
        raise UserError(
            f"genome.{what}: a data-flow genome evolves the path of layers only; remove it, or merge the parameters "
            "first and give that recipe as a source (genome.dfs.merged_sources)"
        )


def check_config(config: EvolveConfig) -> None:
    """What a config says that must hold on this machine: the models' folders exist, mergekit has the method."""
    check_models(config)
    check_method(config)
