"""A world's settings (`WorldSpec`, whose fingerprint names its cache folder) and where the default world lives."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

import mergekit_evo.demo.tiny_world.language as language
from mergekit_evo.plugin.errors import UserError

# Bump when the world's construction changes, so stale caches are rebuilt.
WORLD_FORMAT = 4


class WorldSpec(BaseModel):
    """Sizes and training settings of a world. The defaults are the demo's world."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    hidden: int = Field(256, ge=8, description="hidden size of the Llama models")
    layers: int = Field(8, ge=1, description="the evolved merge sets one weight per model and layer")
    base_steps: int = Field(800, ge=1)
    specialist_steps: int = Field(500, ge=1, description="training steps of the math specialist")
    language_steps: int = Field(500, ge=1, description="training steps of the language specialist")
    base_lr: float = Field(1e-3, gt=0)
    specialist_lr: float = Field(5e-4, gt=0, description="learning rate of the math specialist")
    language_lr: float = Field(
        2e-3,
        gt=0,
        description="learning rate of the language specialist: four times the math one, so its task vector is the "
        "larger and adding both in full interferes (world v4)",
    )
    batch_size: int = Field(64, ge=1)
    items_per_skill: int = Field(
        256, ge=4, le=400, description="facts items per skill, split evenly into search and test"
    )
    math_search_items: int = Field(
        536,
        ge=2,
        le=len(language.arithmetic()) - 2,
        description="arithmetic questions in the search split; the rest (at least 256 by default) are held out",
    )
    math_test_items: int | None = Field(
        None, ge=2, description="held-out arithmetic questions; None: every question not in the search split"
    )
    pinned: bool = Field(
        True,
        description="build with the numerics pinned (numerics.py), for the same weights on every x86-64 CPU with AVX2",
    )

    def fingerprint(self) -> str:
        settings = self.model_dump()
        if settings["math_test_items"] is None:  # the default world's name does not change with the setting
            del settings["math_test_items"]
        text = json.dumps({"format": WORLD_FORMAT, **settings}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def default_world_seed() -> int:
    value = os.environ.get("MERGEKIT_EVO_WORLD_SEED", "0").strip()
    if not value.isdigit():
        raise UserError(f"MERGEKIT_EVO_WORLD_SEED={value!r}: give the seed of the world to use, a whole number")
    return int(value)


def default_world_pinned() -> bool:
    """Whether the default world is the pinned build (numerics.py): yes unless `MERGEKIT_EVO_WORLD_PINNED=0`, which
    builds with this machine's own kernels (faster on some CPUs, but not the README's weights)."""
    value = os.environ.get("MERGEKIT_EVO_WORLD_PINNED", "1").strip()
    if value not in ("0", "1"):
        raise UserError(f"MERGEKIT_EVO_WORLD_PINNED={value!r}: give 1 (the reference numerics) or 0 (this CPU's own)")
    return value == "1"


def default_cache_dir() -> Path:
    root = os.environ.get("MERGEKIT_EVO_CACHE") or Path.home() / ".cache" / "mergekit-evo"
    return Path(root) / "tiny-world"
