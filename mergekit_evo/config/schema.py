"""`EvolveConfig`: the one YAML a user writes, as pydantic models. Every error is one line that names the field and
what would be valid; nothing here touches a file or a model (loading and the checks against this machine are
`load.py` and `checks.py`)."""

from __future__ import annotations

from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mergekit_evo.plugin.errors import UserError, close_matches


def _number_only(annotation: Any) -> bool:
    """Whether a field's type is a number (int or float, alone or in a union with None or literals) and takes no
    boolean: where YAML's `true` would be read as 1 without a word."""
    members = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    members = tuple(get_args(m)[0] if get_origin(m) is Annotated else m for m in members)
    return any(m in (int, float) for m in members) and not any(m in (bool, Any) for m in members)


class _Strict(BaseModel):
    """Every config section: unknown keys refused, numbers finite, and no `true` read as 1 where a number belongs
    (pydantic's lax mode would take `population: true` as a population of 1)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, value in data.items():
                info = cls.model_fields.get(name) if isinstance(name, str) else None
                if isinstance(value, bool) and info is not None and _number_only(info.annotation):
                    raise ValueError(f"{name}: {str(value).lower()} is a yes/no value; give a number")
        return data


Seed = Annotated[int, Field(ge=0, lt=2**32, description="numpy and torch take seeds in [0, 2**32)")]
Evaluations = Annotated[int, Field(ge=1)]


class Bounds(_Strict):
    """An evolved parameter: searched between `min` and `max` (optionally on a grid of `step`)."""

    min: float
    max: float
    step: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must not be below min ({self.min})")
        return self


class MergedSource(_Strict):
    """A parameter-space merge used as a data-flow source (PS+DFS): merged once with mergekit into the run folder."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="its folder under RUN_DIR/sources/")
    recipe: dict[str, Any] | Path = Field(description="a mergekit recipe, inline or the path of its YAML")


class DataFlowConfig(_Strict):
    """`genome.dfs`: Sakana's data-flow search. The genome chooses a path of layers through the sources: the sequence
    is every source's layers in order, repeated `repeats` times, and one gene per position says whether that layer
    is on the path. It is emitted as a mergekit `passthrough` recipe with `slices`."""

    repeats: int = Field(2, ge=1, description="T: how often the sources' layers are repeated in the sequence")
    max_layers: int | None = Field(
        None, ge=1, description="the most layers the evolved model may have; default: the largest source's count"
    )
    scale: bool = Field(
        False,
        description="a gene per position scaling what the first layer after a switch of model adds to the residual "
        "stream (its o_proj and down_proj, through passthrough's `scale`)",
    )
    merged_sources: list[MergedSource] = Field(
        default_factory=list, description="parameter-space merges to use as sources too (PS+DFS), before the models"
    )

    @field_validator("merged_sources")
    @classmethod
    def _sources_once(cls, v: list[MergedSource]) -> list[MergedSource]:
        names = [m.name for m in v]
        if len(set(names)) != len(names):
            raise ValueError("each merged source's name may appear once")
        return v


class GenomeConfig(_Strict):
    """Which mergekit parameters are evolved and at what granularity.

    `parameters` maps a mergekit parameter name to `{min, max}` (evolved) or to a plain value (fixed).
    `layer_groups: 1` gives one value per model; `k > 1` gives k values per model, emitted as a mergekit
    gradient list (mergekit interpolates between them across the layers); `per_layer` gives one per layer.
    `filters` gives each group of tensors (names containing the substring) its own genes, plus one set for the rest.
    `smooth: false` holds each group's value over its own block of layers instead of interpolating.
    """

    parameters: dict[str, Bounds | float | int | bool | str] = Field(default_factory=dict)
    layer_groups: int | Literal["per_layer"] = 1
    filters: list[str] = Field(
        default_factory=list,
        description="tensor-name substrings (self_attn, mlp) whose tensors get their own genes; the rest share one set",
    )
    smooth: bool = Field(
        True,
        description="true: the layer groups' values are a mergekit gradient (interpolated across the layers); "
        "false: each group's value holds over its own block of layers",
    )
    initial: Path | None = Field(None, description="a mergekit YAML whose values are the search's starting point")
    dfs: DataFlowConfig | None = Field(None, description="data-flow search (merge_method: passthrough)")

    @field_validator("layer_groups")
    @classmethod
    def _positive(cls, v):
        if isinstance(v, int) and v < 1:
            raise ValueError("must be 1 or more (or 'per_layer')")
        return v

    @field_validator("filters")
    @classmethod
    def _distinct_filters(cls, v: list[str]) -> list[str]:
        if any(not f.strip() for f in v):
            raise ValueError("a filter is a non-empty part of a tensor name, e.g. self_attn or mlp")
        if len(set(v)) != len(v):
            raise ValueError("each filter may appear once")
        return v


class TaskConfig(_Strict):
    name: str
    backend: str = "native"
    items: Path | None = Field(None, description="JSONL items scored for fitness (the search split)")
    test_items: Path | None = Field(None, description="JSONL items for the held-out report")
    validation_items: Path | None = Field(None, description="JSONL items that choose the final merge among the top-k")
    validation: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="or: this share of the search items, held back (drawn from the seed) to choose the final merge",
    )
    mode: Literal["mc", "gen"] = "mc"
    weight: float = Field(1.0, ge=0)
    batch_size: int = Field(64, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)

    @property
    def has_validation(self) -> bool:
        return self.validation is not None or self.validation_items is not None

    @model_validator(mode="after")
    def _one_validation(self) -> TaskConfig:
        if self.validation is not None and self.validation_items is not None:
            raise ValueError("give validation_items or validation (a share of the search items), not both")
        return self


class PluginChoice(_Strict):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class OptimizerConfig(PluginChoice):
    name: str = "random"
    # a candidate is a merge: ten thousand per generation is past any budget, and a larger one only exhausts memory
    population: int = Field(8, ge=1, le=10_000)


class AuditConfig(_Strict):
    """`estimator.audit`: score some candidates on every search item as well, to check a cheap estimate during the
    run. `audit: true` takes the defaults. Audited candidates keep both numbers in their record."""

    fraction: float = Field(0.05, ge=0, le=1, description="share of candidates scored fully, drawn by index and seed")
    new_best: bool = Field(
        True,
        description="score fully every candidate whose estimate would make it the best; it becomes the best "
        "only if its full score is not below the previous best's",
    )
    refit_error: float | None = Field(
        None,
        gt=0,
        le=1,
        description="refit an estimator that learns (IRT) when its mean absolute error on the candidates audited "
        "since its last fit passes this (accuracy, 0-1: 0.03 is 3 points)",
    )
    refit_min: int = Field(4, ge=1, description="audited candidates since the last fit before the error is judged")


class EstimatorConfig(PluginChoice):
    name: str = "full"
    audit: AuditConfig | None = None

    @field_validator("audit", mode="before")
    @classmethod
    def _switch(cls, value):
        if value is True:
            return {}
        return None if value is False else value


class _ByName(PluginChoice):
    """A plugin choice that may also be written as its name alone (`merger: disk`)."""

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value):
        return {"name": value} if isinstance(value, str) else value


class MergerConfig(_ByName):
    """`merger: resident` or `merger: {name: resident, options: {...}}`: how each candidate becomes a model."""

    name: str = "resident"


class ExecutorConfig(_ByName):
    """`executor: local` or `executor: {name: ray, options: {workers: 4}}`: where candidates are merged and scored."""

    name: str = "local"


class ObserverConfig(_ByName):
    """An entry of `observers:`, `wandb` or `{name: mlflow, options: {experiment: merges}}`: a tracker that watches the
    run. Installing an observer plugin does not turn it on; naming it here does."""

    name: str


class BudgetConfig(_Strict):
    """When the search stops; checked after each generation, so a generation is never cut in half."""

    max_evaluations: Evaluations | None = 40
    max_generations: int | None = Field(None, ge=1)
    max_seconds: float | None = Field(None, gt=0)


class BaselineConfig(_Strict):
    """A plain merge scored beside the evolved one: a mergekit recipe, inline or as the path of its YAML."""

    name: str
    recipe: dict[str, Any] | Path


class SelectionConfig(_Strict):
    """How the final merge is chosen: the `top_k` candidates by search fitness are scored on the validation items
    (tasks with `validation` or `validation_items`) and the best there becomes best.yaml."""

    top_k: int = Field(5, ge=1)


def best_by_rules(tasks: list[TaskConfig]) -> list[str]:
    """What `best_by` may name: the weighted fitness, or one task."""
    return ["weighted"] + [t.name for t in tasks]


class EvolveConfig(_Strict):
    models: list[str] = Field(min_length=1)
    base_model: str | None = None
    merge_method: str | list[str] = Field(
        description="a mergekit method, or a list of them to search over as a gene (see methods())"
    )
    dtype: Literal["float32", "float16", "bfloat16", "float64"] | None = "float32"
    genome: GenomeConfig = Field(default_factory=GenomeConfig)
    tasks: list[TaskConfig] = Field(min_length=1)
    objectives: Literal["weighted", "separate"] = "weighted"
    best_by: str = Field("weighted", description="how the best candidate is picked: 'weighted' or one task's name")
    estimator: EstimatorConfig = Field(default_factory=EstimatorConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    seed: Seed = 0
    merger: MergerConfig = Field(default_factory=MergerConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    observers: list[ObserverConfig] = Field(
        default_factory=list, description="trackers that watch the run (wandb, mlflow); each is told of every candidate"
    )
    baselines: list[BaselineConfig] | None = Field(
        None,
        description="plain merges to compare against; default: the "
        "start point and plain recipes (baselines.py); [] for none",
    )
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    providers: dict[str, str] = Field(
        default_factory=dict,
        description="plugin name -> the distribution to take it "
        "from, where two installed distributions register the same name",
    )
    run_dir: Path | None = None
    scratch_dir: Path | None = None
    write_best_model: bool = False

    @field_validator("tasks", "observers", "baselines")
    @classmethod
    def _named_once(cls, entries, info: ValidationInfo):
        """Tasks, observers and baselines are referred to by name, so each name may appear once."""
        names = [e.name for e in entries or []]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"{str(info.field_name)[:-1]} names must be unique; repeated: {', '.join(repeated)}")
        return entries

    @field_validator("merge_method")
    @classmethod
    def _methods_once(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list):
            if not v:
                raise ValueError("give a method, or a list of two or more to search over")
            if len(set(v)) != len(v):
                raise ValueError("each method may appear once")
            if len(v) == 1:
                return v[0]
        return v

    def methods(self) -> list[str]:
        """The merge methods searched over: one, or several when the method is itself a gene."""
        return [self.merge_method] if isinstance(self.merge_method, str) else list(self.merge_method)

    @field_validator("best_by")
    @classmethod
    def _best_by_names_a_rule(cls, v: str, info: ValidationInfo) -> str:
        rules = best_by_rules(info.data.get("tasks") or [])
        if v not in rules:
            raise ValueError(f"must be 'weighted' or a task name; {close_matches(v, rules)}")
        return v

    def labelled_inputs(self) -> list[tuple[str, str]]:
        """Each input model with the config field that names it (`models[1]`, `base_model`), for messages."""
        return [(f"models[{i}]", ref) for i, ref in enumerate(self.models)] + (
            [("base_model", self.base_model)] if self.base_model else []
        )

    def input_refs(self) -> list[str]:
        """The models being merged and the base, each once: every model a run loads as it is."""
        return list(dict.fromkeys(self.models + ([self.base_model] if self.base_model else [])))

    def objective_names(self) -> list[str]:
        return ["fitness"] if self.objectives == "weighted" else [t.name for t in self.tasks]


class RunOverrides(_Strict):
    """`mergekit-evo run`'s options that override the config, held to the same rules as the config's own fields."""

    max_evaluations: Evaluations | None = None
    seed: Seed | None = None

    @classmethod
    def parse(cls, **values: Any) -> RunOverrides:
        try:
            return cls.model_validate(values)
        except ValidationError as e:
            raise UserError(format_validation_error(e, as_flag=True)) from None

    def apply(self, config: EvolveConfig) -> EvolveConfig:
        updates: dict[str, Any] = {}
        if self.max_evaluations is not None:
            updates["budget"] = config.budget.model_copy(update={"max_evaluations": self.max_evaluations})
        if self.seed is not None:
            updates["seed"] = self.seed
        return config.model_copy(update=updates)


def format_validation_error(error: ValidationError, as_flag: bool = False) -> str:
    """The first error as one line naming the field (or, with `as_flag`, the command-line option)."""
    first = error.errors()[0]
    field = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
    if as_flag:
        field = "--" + field.replace("_", "-")
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return f"{field}: unknown key; remove it or check its spelling"
    if first["type"] == "missing":
        return f"{field}: required but missing"
    given = first.get("input")
    name, _, rest = message.partition(": ")
    if isinstance(given, dict) and name in given and rest:  # a section's check that names its own key
        return f"{field + '.' if field else ''}{name}: {rest}"
    return f"{field}: {message} (got {given!r})"
