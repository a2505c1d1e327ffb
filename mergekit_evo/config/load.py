"""Reading a config: YAML safely (no tags that build objects, duplicate keys refused), relative paths resolved against
the config file's folder (so a config and its data move together), the schema checked; `parse_config` also runs
the checks against this machine (`checks.py`), `read_config` does not (a view of a run folder)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mergekit_evo.config.checks import check_config
from mergekit_evo.config.schema import EvolveConfig, format_validation_error
from mergekit_evo.plugin.errors import UserError


def _resolve_paths(config: EvolveConfig, root: Path) -> EvolveConfig:
    def resolve(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else (root / p).resolve())

    def resolve_model(ref: str | None) -> str | None:
        if ref is None:
            return None
        local = Path(ref).expanduser()
        candidate = local if local.is_absolute() else root / local
        return str(candidate.resolve()) if candidate.exists() else ref

    tasks = [
        t.model_copy(
            update={
                "items": resolve(t.items),
                "test_items": resolve(t.test_items),
                "validation_items": resolve(t.validation_items),
            }
        )
        for t in config.tasks
    ]
    baselines = (
        None
        if config.baselines is None
        else [
            b.model_copy(update={"recipe": resolve(b.recipe)}) if isinstance(b.recipe, Path) else b
            for b in config.baselines
        ]
    )
    genome = config.genome.model_copy(update={"initial": resolve(config.genome.initial)})
    if genome.dfs is not None:
        sources = [
            m.model_copy(update={"recipe": resolve(m.recipe)}) if isinstance(m.recipe, Path) else m
            for m in genome.dfs.merged_sources
        ]
        genome = genome.model_copy(update={"dfs": genome.dfs.model_copy(update={"merged_sources": sources})})
    return config.model_copy(
        update={
            "models": [resolve_model(m) for m in config.models],
            "base_model": resolve_model(config.base_model),
            "tasks": tasks,
            "genome": genome,
            "baselines": baselines,
            "run_dir": resolve(config.run_dir),
            "scratch_dir": resolve(config.scratch_dir),
        }
    )


def parse_config(data: Any, root: Path = Path(".")) -> EvolveConfig:
    """Validate a config mapping (ours or mergekit-evolve's); paths are resolved against `root`; then check that
    the models are there and that mergekit has the method (`check_config`): what a run starts from."""
    config = read_config(data, root)
    check_config(config)
    return config


def read_config(data: Any, root: Path = Path(".")) -> EvolveConfig:
    """The schema alone, paths resolved against `root`: what a view of a run needs, which opens no model folder
    (a run folder copied to another machine, its models left behind, is still read)."""
    if not isinstance(data, dict):
        raise UserError("the config must be a YAML mapping (key: value pairs) at the top level")
    if isinstance(data.get("genome"), dict) and "models" in data["genome"]:
        from mergekit_evo.config.evolve_compat import from_mergekit_evolve

        data = from_mergekit_evolve(data)
    try:
        config = EvolveConfig.model_validate(data)
    except ValidationError as e:
        raise UserError(format_validation_error(e)) from None
    return _resolve_paths(config, root)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (plain PyYAML keeps the last one silently)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
        if not isinstance(key, (str, int, float, bool)):
            continue  # an unhashable key is refused by PyYAML itself
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (a key may appear once; remove one)", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_yaml_text(text: str, where: Path | str) -> Any:
    """YAML from a file's text, safely (no tags that build objects), duplicate keys refused; one line naming `where`."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None)
        mark = getattr(e, "problem_mark", None)
        if problem and mark is not None:
            raise UserError(f"{where}: line {mark.line + 1}: {problem}") from None
        raise UserError(f"{where} is not valid YAML: {str(e).splitlines()[0]}") from None


def load_yaml_mapping(path: Path) -> dict:
    """A config file's YAML (environment variables expanded), refused in one line when it is not a mapping."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"config file {path} is a folder; give the config's YAML file")
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (byte {e.start}); save the config as UTF-8") from None
    data = load_yaml_text(os.path.expandvars(text), path)
    if not isinstance(data, dict):
        raise UserError("the config must be a YAML mapping (key: value pairs) at the top level")
    return data


def load_config(path: Path) -> EvolveConfig:
    return parse_config(load_yaml_mapping(path), Path(path).parent.resolve())
