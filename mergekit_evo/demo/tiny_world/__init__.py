"""A miniature of the evolutionary-merging headline experiment, built locally: see `build.ensure_world`.

spec.py holds a world's settings, items.py its item sets and lm-eval YAMLs, language.py the languages it speaks,
training.py the models and their training, numerics.py the pinned numerics and weight hashes, build.py the build."""

from mergekit_evo.demo.tiny_world.build import ensure_world, load_manifest
from mergekit_evo.demo.tiny_world.items import task_file
from mergekit_evo.demo.tiny_world.spec import WorldSpec, default_cache_dir

__all__ = ["WorldSpec", "default_cache_dir", "ensure_world", "load_manifest", "task_file"]
