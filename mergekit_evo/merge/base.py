"""Merging through mergekit itself: a `MergeConfiguration` in, a model directory out.

The disk path is mergekit's own `run_merge` with lazy loading and low memory, so what we score is exactly what a
user gets from `mergekit-yaml` on the emitted YAML.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from mergekit_evo.mergekit_api import merge_configuration, run_merge
from mergekit_evo.plugin.errors import UserError, parse_plugin_options
from mergekit_evo.plugin.hookspecs import hookimpl

if TYPE_CHECKING:  # mergekit imports peft, transformers and torch: seconds, paid only when a merge is asked for
    from mergekit.config import MergeConfiguration

    from mergekit_evo.config import EvolveConfig


@dataclass
class LoadedModel:
    """A model ready to score: what a merger hands to task backends.

    `path` is the folder it was loaded from (None for a model merged in memory); `input_ref` is the input model's
    reference when this is one of the run's input models, None for a merged candidate.
    """

    model: Any  # a transformers PreTrainedModel (or whatever a plugin's backend scores)
    tokenizer: Any
    path: Path | None = None
    input_ref: str | None = None


class Merger(ABC):
    """Turns a mergekit recipe into a model ready to score. Subclass it and register the class with
    `register_mergers`; the run builds one per run as `cls(config=run_config)` and keeps it to the end.

    `merged` and `input_model` are context managers: the model is valid inside the `with` block only, so a merger may
    free or reuse its memory on exit (the resident merger rewrites one model in place).
    """

    def __init__(self, *, config: EvolveConfig):
        self.config = config

    @property
    def merge_device(self) -> str:
        """Where mergekit's arithmetic runs; recorded with each candidate so its model is rewritten there."""
        return "cpu"

    def describe(self) -> str:
        """One line for the run's log: how candidates are merged."""
        return f"merger: {type(self).__name__}"

    @abstractmethod
    def merged(self, merge_config: MergeConfiguration, seed: int | None = None) -> AbstractContextManager[LoadedModel]:
        """The candidate `merge_config` merged (with mergekit's random seed `seed`, which DARE and DELLA use)."""

    @abstractmethod
    def input_model(self, ref: str) -> AbstractContextManager[LoadedModel]:
        """One of the run's input models as it is, with `LoadedModel.input_ref` set to `ref`, to score it."""


def parse_merge_config(text_or_dict: str | dict) -> MergeConfiguration:
    data = yaml.safe_load(text_or_dict) if isinstance(text_or_dict, str) else text_or_dict
    return merge_configuration(data)


def load_recipe(recipe: dict | Path, field: str) -> dict:
    """A recipe a config gives inline or as the path of its YAML, checked by mergekit's own config model; a bad
    one is refused in one line naming `field`."""
    from pydantic import ValidationError

    if isinstance(recipe, Path):
        if not recipe.is_file():
            raise UserError(f"{field}: {recipe} does not exist; give a mergekit YAML or the recipe inline")
        try:
            recipe = yaml.safe_load(recipe.read_text())
        except yaml.YAMLError as e:
            raise UserError(f"{field}: {recipe} is not valid YAML: {str(e).splitlines()[0]}") from None
    try:
        merge_configuration(recipe)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UserError(f"{field}: not a mergekit recipe: {where}: {first['msg']}") from None
    except (RuntimeError, ValueError, TypeError) as e:  # mergekit's own checks raise these
        raise UserError(f"{field}: not a mergekit recipe: {e}") from None
    assert isinstance(recipe, dict)
    return recipe


def resolve_device(device: str) -> str:
    """`auto` made concrete (cuda when torch sees one); a device that is not there is refused in one line."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise UserError(
            f"merger.options.device: {device!r} is not a torch device; use auto, cpu, cuda or cuda:N"
        ) from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (parsed.index or 0) >= count:
            seen = f"{count} CUDA device{'s' * (count != 1)}" if count else "no CUDA device"
            raise UserError(f"merger.options.device: {device} was asked for but torch sees {seen}; use cpu or auto")
    return device


def merge_to_disk(config: MergeConfiguration, out_dir: Path, seed: int | None = None, device: str = "cpu") -> Path:
    """Run mergekit's `run_merge` into `out_dir`, its arithmetic on `device`; mergekit's warnings go to the log.

    The device is part of what a candidate's tensors are: a seeded DARE mask drawn on a GPU differs from one drawn
    on the CPU, and even deterministic kernels may round differently in the last bit.
    """
    return run_merge(config, out_dir, seed, device)


def write_candidate_model(merge_yaml: str, seed: int, device: str, out_dir: Path) -> str:
    """Write a scored candidate's model with mergekit, on the device it was merged on; returns what to tell the user.

    Where that device is missing (a run from a GPU machine, written out on a laptop), the merge runs on the CPU and
    the message says the tensors may then differ from the scored ones.
    """
    note = ""
    try:
        resolve_device(device)
    except UserError:
        note = (
            f" (on the CPU: the candidate was merged on {device}, which this machine lacks; a seeded random "
            "method draws other masks there)"
        )
        device = "cpu"
    merge_to_disk(parse_merge_config(merge_yaml), out_dir, seed=seed, device=device)
    return f"merged model written to {out_dir}{note}"


def reproduce_command(seed: int, device: str, recipe: str) -> str:
    """The mergekit-yaml line that writes a candidate's exact tensors from its YAML (the seed matters to DARE/DELLA)."""
    on_device = f" --device {device}" if device != "cpu" else ""
    return f"mergekit-yaml {recipe} OUT --random-seed {seed}{on_device}"


@contextlib.contextmanager
def scratch_merge(
    config: MergeConfiguration, scratch_root: Path | None = None, seed: int | None = None, device: str = "cpu"
) -> Iterator[Path]:
    """Merge into a temporary directory that is removed afterwards, also when the caller's scoring fails."""
    root = Path(tempfile.mkdtemp(prefix="mergekit-evo-", dir=scratch_root))
    try:
        yield merge_to_disk(config, root / "model", seed, device)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def load_model(path: Path | str, dtype: str | None = None, device: str = "cpu") -> LoadedModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype) if dtype else "auto"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).eval().to(device)
    return LoadedModel(model=model, tokenizer=AutoTokenizer.from_pretrained(path), path=Path(path))


class DiskOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: str = Field(
        "auto",
        description="where mergekit's arithmetic runs and each merged model is scored: "
        "auto (cuda if present), cpu, cuda, cuda:1",
    )


class DiskMerger(Merger):
    """Each candidate: mergekit `run_merge` (lazy, low memory) into a scratch folder, loaded, scored, deleted.

    Always correct and frugal with memory; the cost is writing and reading every candidate.
    """

    def __init__(self, *, config: EvolveConfig, device: str | None = None):
        super().__init__(config=config)
        if device is None:
            options = parse_plugin_options(DiskOptions, config.merger.options, "merger.options")
            device = resolve_device(options.device)
        self.device = device

    @property
    def merge_device(self) -> str:
        return self.device

    def describe(self) -> str:
        return (
            f"merger: disk on {self.device} (mergekit run_merge into a scratch folder, loaded, scored and deleted "
            "per candidate)"
        )

    @contextlib.contextmanager
    def merged(self, merge_config: MergeConfiguration, seed: int | None = None) -> Iterator[LoadedModel]:
        with scratch_merge(merge_config, self.config.scratch_dir, seed, self.device) as path:
            yield load_model(path, self.config.dtype, self.device)

    @contextlib.contextmanager
    def input_model(self, ref: str) -> Iterator[LoadedModel]:
        """One of the input models as it is, to score the parents on the same items."""
        loaded = load_model(ref, self.config.dtype, self.device)
        yield LoadedModel(model=loaded.model, tokenizer=loaded.tokenizer, path=loaded.path, input_ref=ref)


@hookimpl
def register_mergers(register):
    register("disk", DiskMerger)
