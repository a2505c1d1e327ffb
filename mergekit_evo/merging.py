"""Merging through mergekit itself: a `MergeConfiguration` in, a model directory out.

The disk path is mergekit's own `run_merge` with lazy loading and low memory, so what we score is exactly what a
user gets from `mergekit-yaml` on the emitted YAML.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from mergekit_evo.hookspecs import hookimpl

if TYPE_CHECKING:  # mergekit imports peft, transformers and torch: seconds, paid only when a merge is asked for
    from mergekit.config import MergeConfiguration
    from mergekit.options import MergeOptions


@dataclass
class LoadedModel:
    """A model ready to score: what a merger hands to task backends.

    `path` is the folder it was loaded from (None for a model merged in memory); `source` is the input model's
    reference when this is one of the run's input models, None for a merged candidate.
    """

    model: object
    tokenizer: object
    path: Path | None = None
    source: str | None = None


def parse_merge_config(text_or_dict: str | dict) -> MergeConfiguration:
    from mergekit.config import MergeConfiguration

    data = yaml.safe_load(text_or_dict) if isinstance(text_or_dict, str) else text_or_dict
    return MergeConfiguration.model_validate(data)


def merge_options(seed: int | None = None, device: str = "cpu") -> MergeOptions:
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


def merge_to_disk(config: MergeConfiguration, out_dir: Path, seed: int | None = None) -> Path:
    """Run mergekit's `run_merge` into `out_dir`. mergekit's own warnings go to the log, not the terminal."""
    from mergekit.merge import run_merge

    out_dir = Path(out_dir)
    with contextlib.redirect_stdout(io.StringIO()):
        logging.getLogger("mergekit").setLevel(logging.ERROR)
        run_merge(config, str(out_dir), options=merge_options(seed))
    return out_dir


@contextlib.contextmanager
def scratch_merge(
    config: MergeConfiguration, scratch_root: Path | None = None, seed: int | None = None
) -> Iterator[Path]:
    """Merge into a temporary directory that is removed afterwards, also when the caller's scoring fails."""
    root = Path(tempfile.mkdtemp(prefix="mergekit-evo-", dir=scratch_root))
    try:
        yield merge_to_disk(config, root / "model", seed)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def load_model(path: Path | str, dtype: str | None = None) -> LoadedModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype) if dtype else "auto"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).eval()
    return LoadedModel(model=model, tokenizer=AutoTokenizer.from_pretrained(path), path=Path(path))


class DiskMerger:
    """Each candidate: mergekit `run_merge` (lazy, low memory) into a scratch folder, loaded, scored, deleted.

    Always correct and frugal with memory; the cost is writing and reading every candidate.
    """

    def __init__(self, config):
        self.config = config

    def describe(self) -> str:
        """One line for the run's log."""
        return "merger: disk (mergekit run_merge into a scratch folder, loaded, scored and deleted per candidate)"

    @contextlib.contextmanager
    def merged(self, merge_config: MergeConfiguration, seed: int | None = None) -> Iterator[LoadedModel]:
        with scratch_merge(merge_config, self.config.scratch_dir, seed) as path:
            yield load_model(path, self.config.dtype)

    @contextlib.contextmanager
    def source(self, ref: str) -> Iterator[LoadedModel]:
        """One of the input models as it is, to score the parents on the same items."""
        loaded = load_model(ref, self.config.dtype)
        yield LoadedModel(model=loaded.model, tokenizer=loaded.tokenizer, path=loaded.path, source=ref)


@hookimpl
def register_mergers(register):
    register("disk", DiskMerger)
