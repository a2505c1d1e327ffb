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
from pathlib import Path

import yaml
from mergekit.config import MergeConfiguration
from mergekit.merge import run_merge
from mergekit.options import MergeOptions


def parse_merge_config(text_or_dict: str | dict) -> MergeConfiguration:
    data = yaml.safe_load(text_or_dict) if isinstance(text_or_dict, str) else text_or_dict
    return MergeConfiguration.model_validate(data)


def merge_options(seed: int | None = None, device: str = "cpu") -> MergeOptions:
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
