"""Every use of mergekit, in one place: what the rest of mergekit-evo may know of it.

mergekit has no stable Python API beyond `run_merge` and its config model; its method registry, method specs and
planner are internals that a release may rename. Reading them here only means a mergekit that changed one fails in
one place, with a message naming what changed and the tested range (`MERGEKIT_TESTED`), instead of an
AttributeError deep in a run; `tests/test_mergekit_api.py` checks each one against the installed mergekit.

mergekit imports peft, transformers and torch (seconds), so each function imports it only when called.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mergekit_evo.plugin.errors import UserError

if TYPE_CHECKING:
    from mergekit.config import MergeConfiguration
    from mergekit.options import MergeOptions

# The mergekit versions this code is tested with; pyproject.toml declares the same range.
MERGEKIT_TESTED = ">=0.1.5,<0.1.6"

T = TypeVar("T")


class MergekitChanged(UserError):
    """The installed mergekit lacks something mergekit-evo reads from it: one line naming it, exit status 2."""


@contextlib.contextmanager
def _reading(what: str, *also: type[Exception]) -> Iterator[None]:
    """Turn a missing mergekit name (or one of the errors `also` names, where only a changed mergekit raises them)
    into one clear error naming `what` was read and the tested versions."""
    caught: tuple[type[Exception], ...] = (AttributeError, ImportError, *also)
    try:
        yield
    except caught as e:
        raise MergekitChanged(
            f"mergekit changed {what} ({type(e).__name__}: {e}); mergekit-evo is tested with mergekit{MERGEKIT_TESTED}: "
            f'install a tested version (pip install "mergekit{MERGEKIT_TESTED}")'
        ) from e


# ---------------------------------------------------------------------------------------------- merge methods


@dataclass(frozen=True)
class Parameter:
    """One parameter a merge method takes: `per_model` when each input model gives its own value (mergekit's
    `input` and `non_base` scopes), else one value for the whole merge."""

    name: str
    required: bool
    per_model: bool
    base_excluded: bool  # given to every model but the base (`non_base`): the method builds on a base


@dataclass(frozen=True)
class Method:
    """What a merge method needs and takes, read from mergekit's method spec."""

    name: str
    needs_base: bool
    min_inputs: int
    max_inputs: int | None
    parameters: tuple[Parameter, ...]
    sparsifies: bool | None  # None when mergekit does not say (its methods outside the generalized task arithmetic)

    @property
    def takes_base(self) -> bool:
        """Whether the method builds on a base model (task vectors); linear and its kin average the models alone."""
        return self.needs_base or any(p.base_excluded for p in self.parameters)

    @property
    def ignored(self) -> set[str]:
        """Parameters mergekit accepts but does not use: its task arithmetic takes `density` (and DELLA's `epsilon`,
        breadcrumbs' `gamma`) like its sparsifying siblings, and sparsifies nothing."""
        return {"density", "epsilon", "gamma"} if self.sparsifies is False else set()


def method_names() -> list[str]:
    """Every merge method the installed mergekit registers."""
    with _reading("its method registry (merge_methods.registered_methods)"):
        from mergekit import merge_methods

        return [m.spec.name for m in merge_methods.registered_methods()]


def method(name: str) -> Method:
    """mergekit's method `name`, described (it must be one of `method_names()`)."""
    with _reading(f"the spec of merge method {name!r} (merge_methods.get(name).spec)", TypeError):
        from mergekit import merge_methods

        found = merge_methods.get(name)
        spec = found.spec
        parameters = tuple(
            Parameter(
                name=p.name,
                required=bool(p.required),
                per_model=p.scope.value in ("input", "non_base"),
                base_excluded=p.scope.value == "non_base",
            )
            for p in spec.parameters
        )
        contract = spec.contract
        sparsification = getattr(found, "sparsification_method", "unknown")
        return Method(
            name=spec.name,
            needs_base=contract.base.value == "required",
            min_inputs=int(contract.min_inputs),
            max_inputs=contract.max_inputs or None,
            parameters=parameters,
            sparsifies=None if sparsification == "unknown" else sparsification is not None,
        )


# ---------------------------------------------------------------------------------------------- recipes and merges


def merge_configuration(data: object) -> MergeConfiguration:
    """A recipe checked by mergekit's own config model (pydantic's ValidationError when it is not one)."""
    from mergekit.config import MergeConfiguration

    return MergeConfiguration.model_validate(data)


def merge_options(seed: int | None = None, device: str = "cpu") -> MergeOptions:
    """How every merge runs: lazy loading, low memory, the tokenizer copied, mergekit's random seed on `device`."""
    with _reading("its merge options (MergeOptions)", TypeError):  # TypeError: a renamed option
        from mergekit.options import MergeOptions

        return MergeOptions(
            lazy_unpickle=True,
            low_cpu_memory=True,
            copy_tokenizer=True,
            write_model_card=False,
            random_seed=seed,
            device=device,
            quiet=True,
        )


def run_merge(config: MergeConfiguration, out_dir: Path, seed: int | None = None, device: str = "cpu") -> Path:
    """mergekit's own `run_merge` into `out_dir`, as `mergekit-yaml` runs it; mergekit's chatter goes to the log."""
    with _reading("its run_merge (merge.run_merge)"):
        from mergekit.merge import run_merge as mergekit_run_merge
    options = merge_options(seed, device)
    with contextlib.redirect_stdout(io.StringIO()):
        logging.getLogger("mergekit").setLevel(logging.ERROR)
        mergekit_run_merge(config, str(out_dir), options=options)
    return Path(out_dir)


# ---------------------------------------------------------------------------------------------- the resident merger


def architecture(merge_config: MergeConfiguration, options: MergeOptions) -> tuple[Any, Any]:
    """mergekit's architecture description and the merged model's config, as `run_merge` derives them."""
    with _reading("its architecture lookup (get_architecture_info, merge._model_out_config)"):
        from mergekit.architecture import get_architecture_info
        from mergekit.merge import _model_out_config

        arch_info = get_architecture_info(merge_config, options)
        return arch_info, _model_out_config(merge_config, arch_info, trust_remote_code=options.trust_remote_code)


def plan_saves(merge_config: MergeConfiguration, arch_info: Any, options: MergeOptions, out_config: Any) -> list:
    """The save tasks of mergekit's disk plan for a recipe (the planner rewrites `merge_config`: pass a copy)."""
    with _reading("its planner (MergePlanner.plan_to_disk, io.tasks.LoaderCache, SaveTensor)"):
        from mergekit.io.tasks import LoaderCache, SaveTensor
        from mergekit.plan import MergePlanner

        LoaderCache().setup(options=options)
        planner = MergePlanner(merge_config, arch_info, options=options, out_model_config=out_config)
        return [t for t in planner.plan_to_disk(out_path="(resident)") if isinstance(t, SaveTensor)]


def execution_order(save_tasks: list) -> list[str]:
    """The tensor names of `save_tasks` in the order mergekit's executor runs them (its own scheduler)."""
    with _reading("its scheduler (graph.TaskUniverse, graph.build_schedule)"):
        from mergekit.graph import TaskUniverse, build_schedule
        from mergekit.io.tasks import SaveTensor

        universe = TaskUniverse()
        handles = [universe.add_task(t) for t in save_tasks]
        schedule = build_schedule(handles, cached_values={})
        return [h.task().tensor_name for h in schedule.tasks if isinstance(h.task(), SaveTensor)]


def merge_steps(save: Any) -> tuple[Any, Any] | None:
    """A save task's merge-method task and its gather task, or None when its plan is not gather -> merge -> save."""
    with _reading("its merge tasks (ExecuteMergeMethodTask.gather_tensors, SaveTensor.tensor_task)"):
        from mergekit.merge_methods.task_adapter import ExecuteMergeMethodTask

        merge = save.tensor_task
        if not isinstance(merge, ExecuteMergeMethodTask) or type(merge.gather_tensors).__name__ != "GatherTensors":
            return None
        return merge, merge.gather_tensors


def seed_like_run_merge(seed: int) -> None:
    """Seed every generator as `run_merge` does before its executor, so DARE's masks match a disk merge."""
    import transformers

    with _reading("the seeding run_merge does (transformers.trainer_utils.set_seed)"):
        transformers.trainer_utils.set_seed(seed)
