"""A miniature of the evolutionary-merging headline experiment, built locally: see `build.ensure_world`."""

from mergekit_evo.tiny_world.build import (
    WorldSpec,
    default_cache_dir,
    ensure_world,
    load_manifest,
    task_file,
)

__all__ = ["WorldSpec", "default_cache_dir", "ensure_world", "load_manifest", "task_file"]
