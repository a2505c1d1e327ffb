"""A mergekit-evolve command line as a mergekit-evo run: its config and flags mapped to a checked EvolveConfig
(config/evolve_compat.py holds the mapping itself), where the run lives under --storage-path, and best_config.yaml
written where mergekit-evolve wrote it. The `evolve` command (cli/evolve.py) only parses and prints."""

from __future__ import annotations

from pathlib import Path

from mergekit_evo.config import EvolveConfig, load_yaml_mapping, parse_config
from mergekit_evo.config.evolve_compat import EvolveFlags, cma_population, evolve_flags, from_mergekit_evolve
from mergekit_evo.plugin.errors import UserError
from mergekit_evo.plugin.manager import registry
from mergekit_evo.space.factory import genome_space
from mergekit_evo.store.runs import RunStore

RUN_FOLDER = "mergekit-evo-run"  # under --storage-path
BEST_CONFIG = "best_config.yaml"  # under --storage-path, as mergekit-evolve named it


def evolve_config(genome_config: Path, flags: EvolveFlags) -> EvolveConfig:
    """The run mergekit-evolve would have made of GENOME_CONFIG and its flags; `flags.mapped` says how each flag was
    mapped. A config that is not mergekit-evolve's, or a Ray run without the Ray executor, is refused in one line."""
    raw = load_yaml_mapping(genome_config)
    if not (isinstance(raw.get("genome"), dict) and "models" in raw["genome"]):
        raise UserError(
            f"{genome_config}: not a mergekit-evolve config (it has no genome.models); run a mergekit-evo config "
            "with `mergekit-evo run`"
        )
    import torch

    data = evolve_flags(from_mergekit_evolve(raw), flags, torch.cuda.device_count() if torch.cuda.is_available() else 0)
    if data["executor"]["name"] == "ray" and "ray" not in registry().names("executors"):
        raise UserError(
            f"--strategy {flags.strategy}: runs on Ray, and the Ray executor is not installed; "
            "`pip install mergekit-evo-ray` (plugins/ray), or use --strategy serial"
        )
    config = parse_config(data, Path.cwd())  # mergekit-evolve read model paths as given, from the working directory
    if flags.force_population_size is None:
        population = cma_population(genome_space(config, relax_choices=True).dim)
        config = config.model_copy(update={"optimizer": config.optimizer.model_copy(update={"population": population})})
        flags.mapped.append(f"CMA-ES population {population} (its default for the genome)")
    return config


def run_folder(storage_path: Path) -> Path:
    return storage_path / RUN_FOLDER


def holds_run(storage_path: Path) -> bool:
    """Whether --storage-path holds this command's run already (the same command then resumes it)."""
    return bool(RunStore(run_folder(storage_path)).parts())


def write_best_config(storage_path: Path) -> Path | None:
    """best.yaml copied to STORAGE_PATH/best_config.yaml, where mergekit-evolve wrote its best recipe."""
    best = RunStore(run_folder(storage_path)).read_text(RunStore.BEST)
    if best is None:
        return None
    target = storage_path / BEST_CONFIG
    target.write_text(best)
    return target
