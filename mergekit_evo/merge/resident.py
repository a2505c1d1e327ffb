"""The `resident` merger: sources loaded once, each candidate merged in memory into one model that stays loaded.

Once fitness costs tens of items, writing every candidate to disk and reading it back is most of a run's time. Here
mergekit still does all the merging: its `MergePlanner` plans the candidate's recipe (parameters, gradients and
slices resolved per tensor exactly as `mergekit-yaml` resolves them) and each tensor goes through mergekit's own
merge-method tasks, in the order its executor runs a disk merge, after seeding the same way. Only two things
differ: the source tensors come from a cache filled once by mergekit's own `LoadTensor` tasks, and the results
become the resident model's parameters instead of being written to safetensors. So a candidate's tensors equal
those of `mergekit-yaml` on its YAML (tested bitwise, DARE and DELLA included under the same seed).

Before anything is loaded the merger plans its memory (`memory.plan_memory`) against the device's free memory and
the user's `max_memory`; a plan that cannot fit falls back to the `disk` merger with a message, or is refused
(`fallback: error`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from pydantic import BaseModel, ByteSize, ConfigDict, Field
from tqdm import tqdm

from mergekit_evo.merge.base import DiskMerger, LoadedModel, Merger, load_model, resolve_device
from mergekit_evo.merge.memory import plan_memory
from mergekit_evo.mergekit_api import (
    architecture,
    execution_order,
    merge_options,
    merge_steps,
    plan_saves,
    seed_like_run_merge,
)
from mergekit_evo.plugin.errors import UserError, parse_plugin_options
from mergekit_evo.plugin.hookspecs import hookimpl

if TYPE_CHECKING:
    from mergekit_evo.config import EvolveConfig


class ResidentOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: str = Field(
        "auto", description="where sources and the merged model live: auto (cuda if present), cpu, cuda, cuda:1"
    )
    max_memory: ByteSize | None = Field(None, description="a cap below the device's free memory, e.g. 12GB or 512MiB")
    fallback: Literal["disk", "error"] = Field(
        "disk", description="when the plan does not fit: merge on disk, or refuse"
    )


class ResidentMerger(Merger):
    """In memory: sources loaded once, each candidate merged by mergekit's own tasks into one resident model."""

    def __init__(self, *, config: EvolveConfig):
        super().__init__(config=config)
        self.options: ResidentOptions = parse_plugin_options(ResidentOptions, config.merger.options, "merger.options")
        self.device = resolve_device(self.options.device)
        refs = config.input_refs()
        local = all(Path(ref).is_dir() for ref in refs)
        self.plan = plan_memory(refs, config.dtype, self.device, self.options.max_memory) if local else None
        self.fallback: DiskMerger | None = None
        if self.plan is not None and not self.plan.fits:
            if self.options.fallback == "error":
                raise UserError(
                    f"merger: the resident merger {self.plan.describe()}; use `merger: disk`, raise "
                    "merger.options.max_memory, or set merger.options.fallback: disk"
                )
            # the merged model alone may still fit where all the sources do not: then it is scored on the device
            scored_fits = self.plan.output + self.plan.working <= self.plan.available
            self.fallback = DiskMerger(config=config, device=self.device if scored_fits else "cpu")
        self._sources: dict = {}  # mergekit LoadTensor task -> tensor on self.device, filled on first use
        self._source_storages: set[int] = set()  # their storages, which the resident model must never share
        self._model = None
        self._model_config = None
        self._tokenizer = None
        self._architectures: dict = {}
        self._orders: dict = {}

    @property
    def merge_device(self) -> str:
        return self.fallback.device if self.fallback is not None else self.device

    def describe(self) -> str:
        """One line for the run's log: where candidates are merged, and why."""
        if self.fallback is not None:
            assert self.plan is not None  # a fallback is chosen only from a plan
            return (
                f"merger: resident would not fit, it {self.plan.describe()}; merging on disk instead, on "
                f"{self.fallback.device}"
            )
        memory = f", {self.plan.describe()}" if self.plan else ""
        return f"merger: resident on {self.device}{memory}"

    # ------------------------------------------------------------------------------ the merge

    def _output_model(self, out_config) -> torch.nn.Module:
        """The resident model, built once per output architecture (a slice recipe may change the layer count)."""
        from transformers import AutoModelForCausalLM

        same = self._model_config is not None and (
            out_config is self._model_config  # the usual case: `_architecture` hands out the same cached object
            or out_config.to_json_string() == self._model_config.to_json_string()
        )
        if self._model is None or not same:
            self._model = None
            dtype = getattr(torch, self.config.dtype) if self.config.dtype else torch.float32
            with torch.device(self.device):
                model = AutoModelForCausalLM.from_config(out_config, dtype=dtype)
            self._model, self._model_config = model.eval(), out_config
        assert self._model is not None
        return self._model

    def _load(self, task) -> torch.Tensor | None:
        if task not in self._sources:
            tensor = task.execute()
            if tensor is not None:
                tensor = tensor.to(self.device)
                self._source_storages.add(tensor.untyped_storage().data_ptr())
            self._sources[task] = tensor
        return self._sources[task]

    def _architecture(self, merge_config, options):
        """mergekit's architecture and output config for a recipe; a recipe without slices always gets the same."""
        key = None
        if not (merge_config.slices or merge_config.modules):
            key = (tuple(str(m) for m in merge_config.referenced_models()), merge_config.dtype, merge_config.out_dtype)
            if key in self._architectures:
                return self._architectures[key]
        arch_info, out_config = architecture(merge_config, options)
        if key is not None:
            self._architectures[key] = (arch_info, out_config)
        return arch_info, out_config

    def _disk_order(self, save_tasks: list, method: str | None = None) -> list:
        """The save tasks in the order mergekit's executor runs them for a disk merge of the same plan.

        A seeded random method (DARE, DELLA) draws its masks in execution order, so matching `mergekit-yaml` bitwise
        needs that order; it depends only on the plan's shape, so it is computed once (mergekit's own scheduler)
        and reused for every candidate of that shape. The shape includes the method, whose tasks make the graph the
        scheduler orders (a method gene mixes methods in one run).
        """
        names = (method, *sorted(t.tensor_name for t in save_tasks))
        if names not in self._orders:
            self._orders[names] = {name: i for i, name in enumerate(execution_order(save_tasks))}
        rank = self._orders[names]
        return sorted(save_tasks, key=lambda t: rank[t.tensor_name])

    @torch.no_grad()
    def merge_into_model(self, merge_config, seed: int | None) -> torch.nn.Module:
        """Run mergekit's disk plan for one recipe, with cached sources and a writer that fills the resident model.

        Each tensor goes through the very tasks `run_merge` would run (gather, merge method, save with its dtype
        cast), in the same order and after the same seeding; only the loads are answered from the cache and the
        writer is `_ModelWriter`. What mergekit's executor adds besides (a task graph, device moves, eviction) is
        skipped: on a resident run it was a large share of a candidate's time.
        """
        merge_config = merge_config.model_copy(deep=True)  # the planner rewrites it in place
        if merge_config.tokenizer_source or merge_config.tokenizer:
            raise UserError(
                "merger: the resident merger keeps the base tokenizer; recipes that merge tokenizers need `merger: disk`"
            )
        options = merge_options(seed, self.device)
        arch_info, out_config = self._architecture(merge_config, options)
        model = self._output_model(out_config)
        saves = plan_saves(merge_config, arch_info, options, out_config)
        writer = _ModelWriter(model, self._source_storages)
        if seed is not None:
            seed_like_run_merge(seed)
        saves = self._disk_order(saves, merge_config.merge_method)
        if not self._sources:  # the first candidate also reads every source tensor: minutes for a 7B model
            saves = tqdm(saves, desc="resident merger: loading the sources", unit="tensor", leave=False, disable=None)
        for save in saves:
            steps = merge_steps(save)
            if steps is None:
                raise UserError(f"merger: the resident merger cannot run {save.tensor_name}'s plan; use `merger: disk`")
            merge, gather = steps
            loads = {key: self._load(task) for key, task in gather.arguments().items()}
            save.execute(writer=writer, tensor=merge.execute(tensors=gather.execute(**loads)))
        writer.finalize()
        return model

    def _tokenizer_for(self, merge_config):
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            donor = merge_config.base_model or merge_config.referenced_models()[0]
            self._tokenizer = AutoTokenizer.from_pretrained(donor.model.path)
        return self._tokenizer

    @contextlib.contextmanager
    def merged(self, merge_config, seed: int | None = None) -> Iterator[LoadedModel]:
        if self.fallback is not None:
            with self.fallback.merged(merge_config, seed) as loaded:
                yield loaded
            return
        model = self.merge_into_model(merge_config, seed)
        yield LoadedModel(model=model, tokenizer=self._tokenizer_for(merge_config))

    @contextlib.contextmanager
    def input_model(self, ref: str) -> Iterator[LoadedModel]:
        loaded = load_model(ref, self.config.dtype, self.device)
        yield LoadedModel(model=loaded.model, tokenizer=loaded.tokenizer, input_ref=ref)


class _ModelWriter:
    """Stands in for mergekit's `TensorWriter`: each saved tensor becomes the resident model's parameter.

    A merge result that owns its storage is handed to the parameter as is (`param.data = tensor`), which saves a
    copy over the whole model per candidate: about a tenth of a linear merge's time on a CPU. A result that is a
    view into something bigger, or shares storage with a cached source tensor (a method may return an input
    unchanged), is copied instead, so a source is never aliased by the model and never kept alive by it.
    Tied weights (an output head sharing the input embedding) are one parameter; like `from_pretrained`, which
    ties them after loading, the first name in state-dict order (the embedding) is the one whose merged value counts.
    """

    def __init__(self, model: torch.nn.Module, source_storages: set[int]):
        self.destinations: dict[str, torch.Tensor | None] = {}
        seen: set[int] = set()
        for name in model.state_dict():
            target: torch.Tensor
            try:
                target = model.get_parameter(name)
            except AttributeError:  # a persistent buffer
                target = model.get_buffer(name)
            self.destinations[name] = None if id(target) in seen else target
            seen.add(id(target))
        self.source_storages = source_storages
        self.written: set[str] = set()

    def save_tensor(self, name: str, tensor: torch.Tensor, clone: bool = False) -> None:
        if name not in self.destinations:
            raise RuntimeError(f"mergekit produced {name}, which the output model has no place for")
        target = self.destinations[name]
        if target is not None:
            storage = tensor.untyped_storage()
            handover = (
                isinstance(target, torch.nn.Parameter)
                and tensor.shape == target.shape
                and tensor.dtype == target.dtype
                and tensor.device == target.device
                and tensor.is_contiguous()
                and storage.nbytes() == tensor.nbytes
                and storage.data_ptr() not in self.source_storages
            )
            if handover:
                target.data = tensor
            else:
                with torch.no_grad():
                    target.copy_(tensor)
        self.written.add(name)

    def finalize(self) -> None:
        missing = [n for n, t in self.destinations.items() if t is not None and n not in self.written]
        if missing:
            raise RuntimeError(f"the merge left {len(missing)} tensors of the output model unset, e.g. {missing[0]}")


@hookimpl
def register_mergers(register):
    register("resident", ResidentMerger)
