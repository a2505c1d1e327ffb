"""Preflight: the input models are checked against each other before the first merge, and before the run folder exists.

mergekit merges tensor by tensor, so models that do not share an architecture, a layer count or tensor shapes make
every candidate fail (or, worse, a few), and a model whose config.json does not describe its weights fails inside
transformers with a traceback. All of this can be read from config.json and the safetensors headers in milliseconds,
and told in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

from mergekit_evo.config import EvolveConfig
from mergekit_evo.errors import UserError
from mergekit_evo.files import safetensors_tensors
from mergekit_evo.genome import layer_count


def _label(field: str, ref: str) -> str:
    return f"{field} ({Path(ref).name})"


def read_model_config(field: str, ref: str) -> dict:
    path = Path(ref) / "config.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(
            f"{field}: {path} cannot be read as JSON ({type(e).__name__}); restore the model's config.json"
        ) from None
    if not isinstance(data, dict):
        raise UserError(f"{field}: {path} is not a JSON object; restore the model's config.json")
    return data


def weight_shapes(field: str, ref: str) -> dict[str, tuple[int, ...]] | None:
    """Tensor name -> shape from the safetensors headers (nothing is loaded); None when the weights are not safetensors."""
    files = sorted(Path(ref).glob("*.safetensors"))
    if not files:
        return None
    shapes: dict[str, tuple[int, ...]] = {}
    for path in files:
        try:
            tensors = safetensors_tensors(path)
        except (OSError, ValueError) as e:
            raise UserError(f"{field}: {path} is not a readable safetensors file ({type(e).__name__})") from None
        shapes.update({name: tuple(info["shape"]) for name, info in tensors.items()})
    return shapes


def expected_shapes(field: str, ref: str) -> dict[str, tuple[int, ...]]:
    """The parameter shapes config.json describes, from a model built on the meta device (no memory, no weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(ref)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except Exception as e:  # an edited config.json fails in many ways inside transformers
        raise UserError(
            f"{field}: transformers cannot build a model from {Path(ref) / 'config.json'} "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); restore it"
        ) from None
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def check_config_matches_weights(field: str, ref: str, shapes: dict[str, tuple[int, ...]]) -> None:
    expected = expected_shapes(field, ref)
    for name, shape in shapes.items():
        if name in expected and expected[name] != shape:
            raise UserError(
                f"{field}: config.json does not describe its weights: {name} is {list(shape)} in the weights but "
                f"{list(expected[name])} by config.json; restore the model's config.json"
            )
    missing = [n for n in expected if n not in shapes and not n.endswith(("lm_head.weight", "rotary_emb.inv_freq"))]
    if missing:
        raise UserError(
            f"{field}: config.json describes {missing[0]} (and {len(missing) - 1} more tensors), which "
            "its weights lack; restore the model's config.json"
        )


def check_inputs(config: EvolveConfig) -> None:
    """Refuse input models that cannot be merged with each other, in one line naming the model and the difference."""
    seen: dict[str, str] = {}
    for i, ref in enumerate(config.models):
        key = str(Path(ref).resolve()) if Path(ref).exists() else ref
        if key in seen:
            raise UserError(f"models[{i}]: {ref} is already {seen[key]}; give each model once")
        seen[key] = f"models[{i}]"
    # the base first, so differences are told against it
    labelled = sorted(config.labelled_inputs(), key=lambda fr: fr[0] != "base_model")
    local = [(field, ref) for field, ref in labelled if Path(ref).is_dir()]
    if not local:
        return
    reference: tuple[str, str, dict, dict | None] | None = None
    for field, ref in local:
        model_config = read_model_config(field, ref)
        shapes = weight_shapes(field, ref)
        if shapes is not None:
            check_config_matches_weights(field, ref, shapes)
        if reference is None:
            reference = (field, ref, model_config, shapes)
            continue
        ref_field, ref_ref, ref_config, ref_shapes = reference
        first = _label(ref_field, ref_ref)
        for key in ("architectures", "model_type"):
            if model_config.get(key) != ref_config.get(key):
                raise UserError(
                    f"{field}: {key} is {model_config.get(key)} but {first} has {ref_config.get(key)}; "
                    "mergekit merges models of one architecture"
                )
        layers, ref_layers = layer_count(model_config), layer_count(ref_config)
        if layers != ref_layers:
            raise UserError(
                f"{field}: {Path(ref).name} has {layers} layers but {first} has {ref_layers}; the models "
                "of a merge share a layer count (mergekit's `slices` can stack other layouts)"
            )
        if shapes is None or ref_shapes is None:
            continue
        for name, shape in shapes.items():
            if name in ref_shapes and ref_shapes[name] != shape:
                raise UserError(
                    f"{field}: {name} is {list(shape)} in {Path(ref).name} but {list(ref_shapes[name])} in "
                    f"{first}; the models of a merge share tensor shapes"
                )
        only_one = sorted((set(shapes) ^ set(ref_shapes)) - {"lm_head.weight"})
        if only_one:
            holder = Path(ref).name if only_one[0] in shapes else first
            raise UserError(
                f"{field}: tensor {only_one[0]} is only in {holder} (and {len(only_one) - 1} more tensors "
                f"differ); the models of a merge share their tensors"
            )
