"""`DataFlowSpace`: Sakana's data-flow search (DFS), a point x in [0,1]^d <-> a mergekit `passthrough` recipe.

The parameter-space genome keeps each layer where it is and mixes weights; this one keeps weights as they are and
chooses which layers run, in which order. As in the paper, the candidate layers form a sequence: every source's
layers in order, the whole repeated `repeats` (T) times, so T x (layers of all sources) positions; one gene per
position says whether its layer is on the path (above 0.5). The path becomes `slices` of mergekit's `passthrough`,
so `mergekit-yaml` builds the evolved model as it is scored. A path longer than `max_layers` keeps the layers whose
genes are largest, in sequence order; an empty one keeps the single largest.

The paper also scales the hidden state passed between models. mergekit cannot scale the residual stream itself;
what it can scale is what a layer adds to it, so with `scale: true` each position also has a scale gene (0 to 2)
applied, through passthrough's `scale` parameter, to the o_proj and down_proj of a layer that follows a layer of
another source. It is the nearest recipe mergekit runs, not the paper's matrix W.

Sources may include parameter-space merges (PS+DFS): recipes merged once with mergekit into RUN_DIR/sources/NAME
at the run's start, listed before the models, so the default path is the first of them, as it is.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from mergekit_evo.config import DataFlowConfig, EvolveConfig
from mergekit_evo.merge.base import load_recipe, merge_to_disk, parse_merge_config
from mergekit_evo.model_files import model_label, num_layers
from mergekit_evo.plugin.errors import UserError
from mergekit_evo.space.genome import Gene, Space
from mergekit_evo.store.files import safetensors_tensors

SOURCES = "sources"  # RUN_DIR/sources/NAME: the merged sources of a PS+DFS run
SCALED = ("o_proj", "down_proj")  # what a layer adds to the residual stream, in Llama-style tensor names
SCALE_RANGE = (0.0, 2.0)


def recipe_layers(recipe: dict) -> int | None:
    """How many layers a recipe's model has: its slices' ranges, or its models' count."""
    if recipe.get("slices"):
        ranges = [s["sources"][0].get("layer_range") for s in recipe["slices"]]
        if all(ranges):
            return sum(b - a for a, b in ranges)
        return None
    refs = [recipe.get("base_model")] + [m["model"] for m in recipe.get("models", [])]
    return next((n for n in (num_layers(str(r)) for r in refs if r) if n), None)


def merged_source_dir(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / SOURCES / name


def materialize_sources(config: EvolveConfig, log) -> None:
    """Merge each PS+DFS source that is not in the run folder yet, with mergekit, seeded by the run's seed.

    Written to a scratch folder beside it and renamed when complete, so a kill leaves no half model behind; a
    resumed run reuses the folder.
    """
    dfs = config.genome.dfs
    if dfs is None or not dfs.merged_sources:
        return
    assert config.run_dir is not None
    for i, source in enumerate(dfs.merged_sources):
        target = merged_source_dir(config.run_dir, source.name)
        if (target / "config.json").is_file():
            continue
        recipe = load_recipe(source.recipe, f"genome.dfs.merged_sources[{i}].recipe")
        log(f"merging the data-flow source {source.name} into {target}")
        scratch = target.with_name(f".{source.name}.partial-{os.getpid()}")
        shutil.rmtree(scratch, ignore_errors=True)
        merge_to_disk(parse_merge_config(recipe), scratch, seed=config.seed, device="cpu")
        shutil.rmtree(target, ignore_errors=True)
        scratch.rename(target)


class DataFlowSpace(Space):
    """The data-flow genome (see the module docstring)."""

    def __init__(self, config: EvolveConfig, relax_choices: bool = False):
        self.config = config
        dfs: DataFlowConfig = config.genome.dfs  # type: ignore[assignment]  # genome_space checked it is set
        self.dfs = dfs
        refs: list[str] = []
        layers: list[int] = []
        labels: list[str] = []
        self.merged_recipes: dict[str, dict] = {}  # each merged source's recipe, read and checked once
        for i, source in enumerate(dfs.merged_sources):
            field = f"genome.dfs.merged_sources[{i}]"
            if config.run_dir is None:
                raise UserError(f"{field}: a merged source is written into the run folder; give run_dir")
            self.merged_recipes[source.name] = load_recipe(source.recipe, f"{field}.recipe")
            n = recipe_layers(self.merged_recipes[source.name])
            if not n:
                raise UserError(f"{field}.recipe: its layer count cannot be read from its models' config.json")
            refs.append(str(merged_source_dir(config.run_dir, source.name)))
            layers.append(n)
            labels.append(source.name)
        for i, ref in enumerate(config.models):
            n = num_layers(ref)
            if not n:
                raise UserError(f"models[{i}]: a data-flow genome needs each model's config.json to count its layers")
            refs.append(ref)
            layers.append(n)
            labels.append(model_label(ref))
        if len(set(labels)) != len(labels):
            labels = [f"source{i}" for i in range(len(refs))]
        self.sources, self.source_layers, self.labels = refs, layers, labels
        if dfs.scale:
            names = [
                n for path in sorted(Path(config.models[0]).glob("*.safetensors")) for n in safetensors_tensors(path)
            ]
            if names and not any(part in n for n in names for part in SCALED):
                raise UserError(
                    f"genome.dfs.scale: {labels[-len(config.models)]} has no {' or '.join(SCALED)} tensors (Llama-style "
                    "names), so a scale gene would change nothing; set scale: false"
                )
        self.max_layers = dfs.max_layers or max(layers)
        # the sequence: (source, layer) for every source's layers, repeated
        self.slots = [(m, layer) for _ in range(dfs.repeats) for m in range(len(refs)) for layer in range(layers[m])]
        self.group_prefixes = [
            f"r{i // sum(layers)}.{labels[m]}.layers[{layer}]." for i, (m, layer) in enumerate(self.slots)
        ]
        # for plots: a position's row without its source (its column), so the path reads as a repeat-by-layer grid
        self.group_labels = [f"r{i // sum(layers)}.layers[{layer}]" for i, (_, layer) in enumerate(self.slots)]
        self.fixed: dict[str, object] = {}
        genes = [
            Gene(f"{self.group_prefixes[i][:-1]}", "include", 0.0, 1.0, 1.0, m, i)
            for i, (m, _) in enumerate(self.slots)
        ]
        if dfs.scale:
            genes += [
                Gene(f"{self.group_prefixes[i]}scale", "scale", *SCALE_RANGE, None, m, i)
                for i, (m, _) in enumerate(self.slots)
            ]
        self.genes = genes

    def unit_steps(self) -> np.ndarray:
        """All 0: an inclusion gene is continuous to the optimizer (above 0.5 is on), so CMA-ES may settle on a path
        (a grid step would keep its spread at a third of the cube and flip a fifth of the genes at every draw)."""
        return np.zeros(self.dim)

    def depths(self) -> np.ndarray:
        """Each gene's place along the sequence, 0 to 1: a crossover that splits at a depth splits the path there."""
        last = max(len(self.slots) - 1, 1)
        return np.array([g.group / last for g in self.genes])

    def path(self, x: np.ndarray) -> list[int]:
        """The positions on the path, in sequence order, at most `max_layers` of them and never none."""
        x = np.asarray(x, dtype=float)
        n = len(self.slots)
        include = x[:n]
        chosen = [i for i in range(n) if self.genes[i].value(include[i]) >= 1.0]
        if len(chosen) > self.max_layers:  # the largest genes win; ties go to the earlier position
            chosen = sorted(sorted(chosen, key=lambda i: (-include[i], i))[: self.max_layers])
        return chosen or [int(np.argmax(include))]

    def to_dict(self, x: np.ndarray) -> dict:
        x = np.asarray(x, dtype=float)
        if x.shape != (self.dim,):
            raise ValueError(f"expected a genome of {self.dim} values, got shape {x.shape}")
        scales = x[len(self.slots) :] if self.dfs.scale else None
        slices: list[dict] = []
        previous: tuple[int, int] | None = None  # (source, layer) of the last layer placed
        for position in self.path(x):
            m, layer = self.slots[position]
            switched = previous is not None and previous[0] != m
            scale = self.genes[len(self.slots) + position].value(scales[position]) if scales is not None else 1.0
            scaled = switched and scale != 1.0
            last = slices[-1] if slices else None
            extends = (
                last is not None
                and not scaled
                and "parameters" not in last["sources"][0]
                and previous == (m, layer - 1)
            )
            if extends:
                assert last is not None
                last["sources"][0]["layer_range"][1] = layer + 1
            else:
                source: dict = {"model": self.sources[m], "layer_range": [layer, layer + 1]}
                if scaled:
                    source["parameters"] = {
                        "scale": [{"filter": name, "value": scale} for name in SCALED] + [{"value": 1.0}]
                    }
                slices.append({"sources": [source]})
            previous = (m, layer)
        data: dict = {"merge_method": "passthrough", "slices": slices}
        if self.config.dtype:
            data["dtype"] = self.config.dtype
        return data

    def layer_count(self, x: np.ndarray) -> int:
        """How many layers the point's model has."""
        return len(self.path(x))

    def default_point(self) -> np.ndarray:
        """The first source as it is: its layers in the first repeat on the path (0.75), every other off (0.25),
        scales at 1."""
        x = np.full(self.dim, 0.5)
        for i, (m, _) in enumerate(self.slots):
            x[i] = 0.75 if m == 0 and i < self.source_layers[0] else 0.25
        return x

    def encode(self, merge_yaml: str | dict) -> np.ndarray:
        raise UserError("genome.initial: a data-flow genome starts from its first source; remove genome.initial")

    def initial_point(self) -> np.ndarray:
        return self.default_point()

    def describe(self) -> str:
        sources = ", ".join(f"{label} ({n} layers)" for label, n in zip(self.labels, self.source_layers))
        return (
            f"data-flow genome: {len(self.slots)} positions ({self.dfs.repeats} x [{sources}]), at most "
            f"{self.max_layers} layers"
        )
