"""`GenomeSpace`: a point x in [0,1]^d <-> a mergekit `MergeConfiguration`.

Optimizers only ever see the unit cube; the genome owns the bounds, grids, names and the mergekit layout. Per-layer
genes become mergekit gradient lists, so the emitted YAML is exactly what `mergekit-yaml` runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import yaml

from mergekit_evo.config import Bounds, EvolveConfig
from mergekit_evo.mergekit_api import merge_configuration
from mergekit_evo.mergekit_api import method as mergekit_method
from mergekit_evo.model_files import model_label, num_layers
from mergekit_evo.plugin.errors import UserError

if TYPE_CHECKING:
    from mergekit.config import MergeConfiguration

DECIMALS = 4


@dataclass(frozen=True)
class Gene:
    name: str
    parameter: str  # the mergekit parameter; "merge_method" for a method gene; "include"/"scale" in a data-flow genome
    low: float
    high: float
    step: float | None
    model: int | None  # index into the models (a data-flow genome's sources); None for a shared parameter
    group: int  # index of the layer group (0 when one value per model); a data-flow genome's position
    tensor_filter: str | None = None  # the `genome.filters` entry this gene's tensors match; None: the rest
    choices: tuple[str, ...] = ()  # a categorical gene's options: the value is the index of the chosen one
    option: str | None = None  # the relaxed encoding of a choice: the option this gene scores (the largest wins)

    def value(self, x: float) -> float:
        if self.choices:  # equal shares of [0, 1], one per option
            return float(min(int(float(np.clip(x, 0.0, 1.0)) * len(self.choices)), len(self.choices) - 1))
        v = self.low + float(np.clip(x, 0.0, 1.0)) * (self.high - self.low)
        if self.step:
            v = self.low + round((v - self.low) / self.step) * self.step
        return round(min(max(v, self.low), self.high), DECIMALS)

    def unit(self, value: float) -> float:
        if self.choices:
            return (int(value) + 0.5) / len(self.choices)
        return 0.5 if self.high == self.low else float(np.clip((value - self.low) / (self.high - self.low), 0, 1))


def block_of(layer: int, k: int, n_layers: int) -> int:
    """The layer group a layer belongs to when k groups hold their values over equal blocks (`smooth: false`)."""
    return layer * k // n_layers


def _group_names(k: int, n_layers: int | None, smooth: bool = True) -> list[str]:
    """Readable names for k layer groups, e.g. `layers[0:2]`: the layers nearest each gradient anchor, or each
    group's block of layers."""
    if k == 1:
        return [""]
    if not n_layers:
        return [f"gradient[{j}]." for j in range(k)]
    anchors = np.linspace(0, n_layers - 1, k)
    nearest = np.abs(np.arange(n_layers)[:, None] - anchors[None, :]).argmin(axis=1)
    if not smooth:
        nearest = np.array([block_of(layer, k, n_layers) for layer in range(n_layers)])
    names = []
    for j in range(k):
        layers = np.where(nearest == j)[0]
        if len(layers) == 0:
            names.append(f"layers@{anchors[j]:.1f}.")
        elif len(layers) == 1:
            names.append(f"layers[{layers[0]}].")
        else:
            names.append(f"layers[{layers[0]}:{layers[-1] + 1}].")
    return names


class Space:
    """What every genome is: genes over the unit cube, and a point's mergekit recipe (`to_dict`, in a subclass).

    A subclass sets `genes`, `labels` (each model's or source's name) and `group_labels` (each layer group's or
    position's name), and implements `to_dict`, `unit_steps`, `depths`, `default_point`, `initial_point`, `encode`
    and `describe`.
    """

    genes: list[Gene]
    labels: list[str]
    group_labels: list[str]

    @property
    def dim(self) -> int:
        return len(self.genes)

    @property
    def names(self) -> list[str]:
        return [g.name for g in self.genes]

    def values(self, x: np.ndarray) -> dict[str, float]:
        return {g.name: g.value(xi) for g, xi in zip(self.genes, x)}

    def to_dict(self, x: np.ndarray) -> dict:
        raise NotImplementedError

    def unit_steps(self) -> np.ndarray:
        raise NotImplementedError

    def depths(self) -> np.ndarray:
        raise NotImplementedError

    def default_point(self) -> np.ndarray:
        raise NotImplementedError

    def initial_point(self) -> np.ndarray:
        raise NotImplementedError

    def encode(self, merge_yaml: str | dict) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def layout(self) -> list[dict]:
        """Each gene as the views draw it, written to the run folder (genome.json) so they need neither the models
        nor the plugins: its name, parameter (with its tensor group), layer group, model, and a categorical gene's
        options (one gene picking among `choices`, or one gene per `option`, the largest choosing)."""
        return [
            {
                "name": g.name,
                "parameter": g.parameter if g.tensor_filter is None else f"{g.parameter} [{g.tensor_filter}]",
                "group": self.group_labels[g.group],
                "model": "shared" if g.model is None else self.labels[g.model],
                "low": g.low,
                "high": g.high,
                **({"choices": list(g.choices)} if g.choices else {}),
                **({"option": g.option} if g.option else {}),
            }
            for g in self.genes
        ]

    def to_merge_config(self, x: np.ndarray) -> MergeConfiguration:
        return merge_configuration(self.to_dict(x))

    def to_yaml(self, x: np.ndarray) -> str:
        return yaml.safe_dump(self.to_dict(x), sort_keys=False)


class GenomeSpace(Space):
    """The parameter-space genome: mergekit parameters per model, per layer group and per tensor group, and the
    method itself when `merge_method` lists several.

    A method gene comes in one of two encodings: one gene whose value picks a method (equal shares of [0, 1], for
    optimizers that search mixed spaces, such as a GA), or, for optimizers that model a continuous distribution
    (`relaxes_choices`, CMA-ES), one gene per method, the largest choosing. Ties go to the first listed method, so
    the default point merges with it. A parameter's genes count only when the chosen method takes it.
    """

    def __init__(self, config: EvolveConfig, relax_choices: bool = False):
        self.config = config
        self.methods = config.methods()
        self.specs = {m: mergekit_method(m) for m in self.methods}
        self.scopes = {m: {p.name: p.per_model for p in spec.parameters} for m, spec in self.specs.items()}
        if len(self.methods) > 1:  # a gene that does nothing for the chosen method is left out of its recipe
            for method, scopes in self.scopes.items():
                for name in self.specs[method].ignored:
                    scopes.pop(name, None)
        self.per_model = {name for scopes in self.scopes.values() for name, per_model in scopes.items() if per_model}
        self.n_layers = num_layers(config.base_model or config.models[0])
        groups = config.genome.layer_groups
        if groups == "per_layer":
            if not self.n_layers:
                raise UserError("genome.layer_groups: 'per_layer' needs the model's config.json to count layers")
            groups = self.n_layers
        if self.n_layers and groups > self.n_layers:
            raise UserError(
                f"genome.layer_groups: {groups} is more than the model's {self.n_layers} layers; use at most "
                f"{self.n_layers}, or 'per_layer'"
            )
        if not config.genome.smooth and groups > 1 and not self.n_layers:
            raise UserError("genome.smooth: false needs the model's config.json to count layers; or use smooth: true")
        self.groups = groups
        self.smooth = config.genome.smooth
        labels = [model_label(m) for m in config.models]
        if len(set(labels)) != len(labels):
            labels = [f"model{i}" for i in range(len(config.models))]
        self.labels = labels
        prefixes = _group_names(groups, self.n_layers, self.smooth)
        self.group_prefixes = prefixes  # each layer group's name, as its genes' names begin
        self.group_labels = [n.rstrip(".") or "all layers" for n in prefixes]
        self.filters: list[str | None] = [*config.genome.filters, None] if config.genome.filters else [None]
        genes: list[Gene] = []
        if len(self.methods) > 1:
            if relax_choices:
                genes += [Gene(f"method.{m}", "merge_method", 0.0, 1.0, None, None, 0, option=m) for m in self.methods]
            else:
                genes.append(Gene("method", "merge_method", 0.0, 1.0, None, None, 0, choices=tuple(self.methods)))
        self.fixed: dict[str, object] = {}
        for name, setting in config.genome.parameters.items():
            if not isinstance(setting, Bounds):
                self.fixed[name] = setting
                continue
            owners = range(len(config.models)) if name in self.per_model else [None]
            for model in owners:
                for tensor_filter in self.filters:
                    for group in range(groups):
                        owner = "" if model is None else f"{labels[model]}."
                        tensors = "" if len(self.filters) == 1 else f"{tensor_filter or 'other'}."
                        genes.append(
                            Gene(
                                f"{prefixes[group]}{owner}{tensors}{name}",
                                name,
                                setting.min,
                                setting.max,
                                setting.step,
                                model,
                                group,
                                tensor_filter,
                            )
                        )
        self.genes = genes

    def unit_steps(self) -> np.ndarray:
        """Each gene's grid spacing in the unit cube (0 for a continuous gene), for optimizers that can use it."""
        return np.array(
            [
                1 / len(g.choices) if g.choices else g.step / (g.high - g.low) if g.step and g.high > g.low else 0.0
                for g in self.genes
            ]
        )

    def _position(self, group: int) -> float:
        """Where a layer group sits along the layers, 0 (first) to 1 (last): its anchor, or its block's middle."""
        if self.groups == 1:
            return 0.5
        if self.smooth or not self.n_layers:
            return group / (self.groups - 1)
        layers = [layer for layer in range(self.n_layers) if block_of(layer, self.groups, self.n_layers) == group]
        return float(np.mean(layers)) / max(self.n_layers - 1, 1)

    def depths(self) -> np.ndarray:
        """Each gene's place along the layers (0 first, 1 last; NaN for a gene that spans them all), for optimizers
        whose crossover splits a genome at a layer (M2N2)."""
        return np.array(
            [
                self._position(g.group) if self.groups > 1 and g.parameter != "merge_method" else np.nan
                for g in self.genes
            ]
        )

    def describe(self) -> str:
        """One line for the run's log: what the genome searches."""
        methods = " or ".join(self.methods)
        tensors = (
            f", tensor groups {', '.join(self.config.genome.filters)} and the rest" if len(self.filters) > 1 else ""
        )
        layers = "" if self.groups == 1 else f", {self.groups} layer groups ({'gradient' if self.smooth else 'blocks'})"
        return f"genome: {self.dim} genes for {methods}{layers}{tensors}"

    def method_of(self, x: np.ndarray) -> str:
        """The merge method a point chooses."""
        if len(self.methods) == 1:
            return self.methods[0]
        chooser = [(g, xi) for g, xi in zip(self.genes, x) if g.parameter == "merge_method"]
        if chooser[0][0].choices:
            gene, xi = chooser[0]
            return gene.choices[int(gene.value(xi))]
        return self.methods[int(np.argmax([float(np.clip(xi, 0, 1)) for _, xi in chooser]))]

    def _setting(self, values: list[float]):
        """One tensor group's values over the layer groups, as mergekit takes them: a scalar, a gradient (smooth), or
        one value per layer, each layer taking its block's value."""
        if len(values) == 1:
            return values[0]
        if self.smooth or self.groups == self.n_layers:
            return list(values)
        assert self.n_layers  # refused in __init__ otherwise
        return [values[block_of(layer, self.groups, self.n_layers)] for layer in range(self.n_layers)]

    def _filtered(self, by_filter: dict[str | None, list[float]]):
        """A parameter's values per tensor group as mergekit's filtered list: each filter, then the rest."""
        if len(self.filters) == 1:
            return self._setting(by_filter[None])
        return [
            {"filter": f, "value": self._setting(by_filter[f])}
            if f is not None
            else {"value": self._setting(by_filter[f])}
            for f in self.filters
        ]

    def to_dict(self, x: np.ndarray) -> dict:
        """The mergekit config of a point, as plain data in mergekit's own schema."""
        x = np.asarray(x, dtype=float)
        if x.shape != (self.dim,):
            raise ValueError(f"expected a genome of {self.dim} values, got shape {x.shape}")
        method = self.method_of(x)
        takes = self.scopes[method]
        per_model: list[dict[str, dict[str | None, list[float]]]] = [{} for _ in self.config.models]
        shared: dict[str, dict[str | None, list[float]]] = {}
        for gene, xi in zip(self.genes, x):
            if gene.parameter not in takes:
                continue  # a method gene, or a parameter the chosen method does not take
            target = shared if gene.model is None else per_model[gene.model]
            target.setdefault(gene.parameter, {}).setdefault(gene.tensor_filter, []).append(gene.value(xi))
        fixed = {k: v for k, v in self.fixed.items() if k in takes}
        models = []
        for i, ref in enumerate(self.config.models):
            params = {k: self._filtered(v) for k, v in per_model[i].items()}
            params.update({k: v for k, v in fixed.items() if k in self.per_model})
            models.append({"model": ref, **({"parameters": params} if params else {})})
        data: dict = {"merge_method": method, "models": models}
        if self.config.base_model and (len(self.methods) == 1 or self.specs[method].takes_base):
            data["base_model"] = self.config.base_model
        top = {k: self._filtered(v) for k, v in shared.items()}
        top.update({k: v for k, v in fixed.items() if k not in self.per_model})
        if top:
            data["parameters"] = top
        if self.config.dtype:
            data["dtype"] = self.config.dtype
        return data

    def default_point(self) -> np.ndarray:
        """Where a search starts without a user recipe: the middle of every range (equal weights), and the first
        listed method."""
        x = np.full(self.dim, 0.5)
        for i, gene in enumerate(self.genes):
            if gene.choices:
                x[i] = gene.unit(0)
        return x

    def _recipe_value(self, gene: Gene, value) -> float | None:
        """A gene's value in an existing recipe's setting: its tensor group's entry, resampled to its layer group."""
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            matching = [v for v in value if v.get("filter") == gene.tensor_filter] or [
                v for v in value if v.get("filter") in (None, "*")
            ]
            if not matching:
                return None
            value = matching[0].get("value")
        if isinstance(value, list):
            positions = np.linspace(0, 1, len(value))
            return float(np.interp(self._position(gene.group), positions, value))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        return None

    def encode(self, merge_yaml: str | dict) -> np.ndarray:
        """The point of an existing mergekit recipe: its method and values, resampled to our layer groups, clipped."""
        data = yaml.safe_load(merge_yaml) if isinstance(merge_yaml, str) else merge_yaml
        by_label = {}
        for entry in data.get("models", []):
            by_label[model_label(str(entry["model"]))] = entry.get("parameters") or {}
        shared = data.get("parameters") or {}
        x = self.default_point()
        method = data.get("merge_method")
        for i, gene in enumerate(self.genes):
            if gene.parameter == "merge_method":
                if method in self.methods:
                    x[i] = gene.unit(self.methods.index(method)) if gene.choices else float(gene.option == method)
                continue
            source = shared if gene.model is None else by_label.get(model_label(self.config.models[gene.model]), {})
            if gene.parameter not in source:
                continue
            value = self._recipe_value(gene, source[gene.parameter])
            if value is not None:
                x[i] = gene.unit(value)
        return x

    def initial_point(self) -> np.ndarray:
        path = self.config.genome.initial
        if path is None:
            return self.default_point()
        if not path.is_file():
            raise UserError(f"genome.initial: {path} does not exist")
        return self.encode(path.read_text())
