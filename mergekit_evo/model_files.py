"""What mergekit-evo reads of a model folder without loading the model: its label and its layer count.

A leaf (it imports no other module of the package), so config translation, genomes, views and the demo share it.
"""

from __future__ import annotations

import json
from pathlib import Path


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
