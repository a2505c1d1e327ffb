"""mergekit-evolve's config, translated to ours, so its users can bring the files they have.

mergekit-evolve (deprecated in mergekit) keeps the models under `genome:` and its tasks are lm-eval tasks with a
`weight` and a `metric`; `parse_config` calls this when it sees that shape.
"""

from __future__ import annotations

from typing import Any


def from_mergekit_evolve(data: dict) -> dict:
    """Translate mergekit-evolve's config (`genome:` with models, `tasks:` with lm-eval tasks) to ours."""
    genome = data["genome"]
    allow_negative = bool(genome.get("allow_negative_weights", False))
    parameters: dict[str, Any] = {"weight": {"min": -1.0 if allow_negative else 0.0, "max": 1.0}}
    method = genome.get("merge_method", "ties")
    if method in {"ties", "dare_ties", "dare_linear", "breadcrumbs", "breadcrumbs_ties", "della", "della_linear"}:
        parameters["density"] = {"min": 0.0, "max": 1.0}
    if "normalize" in genome:
        parameters["normalize"] = bool(genome["normalize"])
    granularity = genome.get("layer_granularity", 0)
    result = {
        "models": list(genome["models"]),
        "base_model": genome.get("base_model"),
        "merge_method": method,
        "genome": {"parameters": parameters, "layer_groups": "per_layer" if granularity else 1},
        "tasks": [
            {
                "name": t["name"],
                "backend": "lm-eval",
                "weight": t.get("weight", 1.0),
                "options": {k: v for k, v in t.items() if k in {"metric"}},
            }
            for t in data.get("tasks", [])
        ],
    }
    for key in ("seed", "run_dir"):
        if key in data:
            result[key] = data[key]
    return result
