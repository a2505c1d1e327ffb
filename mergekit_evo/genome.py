"""`GenomeSpace`: a point x in [0,1]^d <-> a mergekit `MergeConfiguration`.

Optimizers only ever see the unit cube; the genome owns the bounds, grids, names and the mergekit layout. Per-layer
genes become mergekit gradient lists, so the emitted YAML is exactly what `mergekit-yaml` runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from mergekit.config import MergeConfiguration

from mergekit_evo.config import Bounds, EvolveConfig, method_spec
from mergekit_evo.errors import UserError

DECIMALS = 4


@dataclass(frozen=True)
class Gene:
    name: str
    parameter: str
    low: float
    high: float
    step: float | None
    model: int | None  # index into config.models; None for a shared (method-level) parameter
    group: int  # index of the layer group (0 when one value per model)

    def value(self, x: float) -> float:
        v = self.low + float(np.clip(x, 0.0, 1.0)) * (self.high - self.low)
        if self.step:
            v = self.low + round((v - self.low) / self.step) * self.step
        return round(min(max(v, self.low), self.high), DECIMALS)

    def unit(self, value: float) -> float:
        return 0.5 if self.high == self.low else float(np.clip((value - self.low) / (self.high - self.low), 0, 1))


def model_label(ref: str) -> str:
    return Path(ref.rstrip("/")).name or ref


def num_layers(model_ref: str) -> int | None:
    path = Path(model_ref) / "config.json"
    if not path.is_file():
        return None
    return layer_count(json.loads(path.read_text()))


def layer_count(model_config: dict) -> int | None:
    """The layer count a model's config.json gives, under the names the common architectures use."""
    inner = model_config.get("text_config", model_config)
    return inner.get("num_hidden_layers") or inner.get("n_layer") or inner.get("num_layers")


def _group_names(k: int, n_layers: int | None) -> list[str]:
    """Readable names for k gradient anchors: the layers nearest each anchor, e.g. `layers[0:2]`."""
    if k == 1:
        return [""]
    if not n_layers:
        return [f"gradient[{j}]." for j in range(k)]
    anchors = np.linspace(0, n_layers - 1, k)
    nearest = np.abs(np.arange(n_layers)[:, None] - anchors[None, :]).argmin(axis=1)
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


class GenomeSpace:
    def __init__(self, config: EvolveConfig):
        self.config = config
        spec = method_spec(config.merge_method)
        scopes = {p.name: p.scope.value for p in spec.parameters}
        self.per_model = {name for name, scope in scopes.items() if scope in ("input", "non_base")}
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
        self.groups = groups
        labels = [model_label(m) for m in config.models]
        if len(set(labels)) != len(labels):
            labels = [f"model{i}" for i in range(len(config.models))]
        self.labels = labels
        prefixes = _group_names(groups, self.n_layers)
        self.group_prefixes = prefixes  # each layer group's name, as its genes' names begin
        genes: list[Gene] = []
        self.fixed: dict[str, object] = {}
        for name, setting in config.genome.parameters.items():
            if not isinstance(setting, Bounds):
                self.fixed[name] = setting
                continue
            owners = range(len(config.models)) if name in self.per_model else [None]
            for model in owners:
                for group in range(groups):
                    owner = "" if model is None else f"{labels[model]}."
                    genes.append(
                        Gene(
                            f"{prefixes[group]}{owner}{name}",
                            name,
                            setting.min,
                            setting.max,
                            setting.step,
                            model,
                            group,
                        )
                    )
        self.genes = genes

    @property
    def dim(self) -> int:
        return len(self.genes)

    @property
    def names(self) -> list[str]:
        return [g.name for g in self.genes]

    def unit_steps(self) -> np.ndarray:
        """Each gene's grid spacing in the unit cube (0 for a continuous gene), for optimizers that can use it."""
        return np.array([g.step / (g.high - g.low) if g.step and g.high > g.low else 0.0 for g in self.genes])

    def values(self, x: np.ndarray) -> dict[str, float]:
        return {g.name: g.value(xi) for g, xi in zip(self.genes, x)}

    def _setting(self, values: list[float]):
        return values[0] if len(values) == 1 else list(values)

    def to_dict(self, x: np.ndarray) -> dict:
        """The mergekit config of a point, as plain data in mergekit's own schema."""
        x = np.asarray(x, dtype=float)
        if x.shape != (self.dim,):
            raise ValueError(f"expected a genome of {self.dim} values, got shape {x.shape}")
        per_model: list[dict[str, list[float]]] = [{} for _ in self.config.models]
        shared: dict[str, list[float]] = {}
        for gene, xi in zip(self.genes, x):
            target = shared if gene.model is None else per_model[gene.model]
            target.setdefault(gene.parameter, []).append(gene.value(xi))
        models = []
        for i, ref in enumerate(self.config.models):
            params = {k: self._setting(v) for k, v in per_model[i].items()}
            params.update({k: v for k, v in self.fixed.items() if k in self.per_model})
            models.append({"model": ref, **({"parameters": params} if params else {})})
        data: dict = {"merge_method": self.config.merge_method, "models": models}
        if self.config.base_model:
            data["base_model"] = self.config.base_model
        top = {k: self._setting(v) for k, v in shared.items()}
        top.update({k: v for k, v in self.fixed.items() if k not in self.per_model})
        if top:
            data["parameters"] = top
        if self.config.dtype:
            data["dtype"] = self.config.dtype
        return data

    def to_merge_config(self, x: np.ndarray) -> MergeConfiguration:
        return MergeConfiguration.model_validate(self.to_dict(x))

    def to_yaml(self, x: np.ndarray) -> str:
        return yaml.safe_dump(self.to_dict(x), sort_keys=False)

    def default_point(self) -> np.ndarray:
        """Where a search starts without a user recipe: the middle of every range (equal weights)."""
        return np.full(self.dim, 0.5)

    def encode(self, merge_yaml: str | dict) -> np.ndarray:
        """The point of an existing mergekit recipe: its values, resampled to our layer groups and clipped."""
        data = yaml.safe_load(merge_yaml) if isinstance(merge_yaml, str) else merge_yaml
        by_label = {}
        for entry in data.get("models", []):
            by_label[model_label(str(entry["model"]))] = entry.get("parameters") or {}
        shared = data.get("parameters") or {}
        x = self.default_point()
        for i, gene in enumerate(self.genes):
            source = shared if gene.model is None else by_label.get(model_label(self.config.models[gene.model]), {})
            if gene.parameter not in source:
                continue
            value = source[gene.parameter]
            if isinstance(value, list):
                positions = np.linspace(0, 1, len(value))
                where = 0.0 if self.groups == 1 else gene.group / (self.groups - 1)
                value = float(np.interp(where, positions, value))
            elif not isinstance(value, (int, float)):
                continue
            x[i] = gene.unit(float(value))
        return x

    def initial_point(self) -> np.ndarray:
        path = self.config.genome.initial
        if path is None:
            return self.default_point()
        if not path.is_file():
            raise UserError(f"genome.initial: {path} does not exist")
        return self.encode(path.read_text())
