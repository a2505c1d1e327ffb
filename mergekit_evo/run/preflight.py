"""Preflight: the input models are checked against each other before the first merge, and before the run folder exists.

mergekit merges tensor by tensor, so models that do not share an architecture, a layer count or tensor shapes make
every candidate fail (or, worse, a few), and a model whose config.json does not describe its weights fails inside
transformers with a traceback. All of this can be read from config.json and the safetensors headers in milliseconds,
and told in one line. So can what would fail only later, after the run folder exists: weights cut short or kept as
pickles (which run code when loaded), a missing tokenizer or one that needs remote code, and items the scoring model
cannot take (a choice that adds no token, a prompt longer than the model's context).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from mergekit_evo.config import EvolveConfig
from mergekit_evo.model_files import layer_count
from mergekit_evo.plugin.errors import UserError
from mergekit_evo.store.files import safetensors_tensors


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


PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")


def weight_shapes(field: str, ref: str) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from the safetensors headers (nothing is loaded). A folder whose weights are missing, cut
    short, or kept only as pickles is refused: a pickle runs code when it is loaded, and mergekit would load it."""
    files = sorted(Path(ref).glob("*.safetensors"))
    if not files:
        pickled = sorted(p.name for pattern in PICKLED_WEIGHTS for p in Path(ref).glob(pattern))
        if pickled:
            raise UserError(
                f"{field}: {ref} keeps its weights as {pickled[0]}, a pickle, which can run code when loaded; convert "
                "them to safetensors where you trust the file (save_pretrained(..., safe_serialization=True))"
            )
        raise UserError(f"{field}: {ref} holds no weights (no *.safetensors file); point it at a saved model")
    shapes: dict[str, tuple[int, ...]] = {}
    for path in files:
        try:
            tensors = safetensors_tensors(path)
            end = max((int(info["data_offsets"][1]) for info in tensors.values()), default=0)
            with path.open("rb") as f:
                header = int.from_bytes(f.read(8), "little")
            size = path.stat().st_size
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
            raise UserError(f"{field}: {path} is not a readable safetensors file ({type(e).__name__})") from None
        if size < 8 + header + end:
            raise UserError(
                f"{field}: {path} is cut short ({size} bytes of the {8 + header + end} its header describes); "
                "copy or download the model again"
            )
        shapes.update({name: tuple(info["shape"]) for name, info in tensors.items()})
    return shapes


def check_tokenizer(field: str, ref: str) -> Any:
    """Each input is scored with its own tokenizer: it must be there and load without remote code. Returns it."""
    folder = Path(ref)
    settings = folder / "tokenizer_config.json"
    if settings.is_file():
        try:
            data = json.loads(settings.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UserError(f"{field}: {settings} cannot be read as JSON ({type(e).__name__}); restore it") from None
        if isinstance(data, dict) and "auto_map" in data:
            raise UserError(
                f"{field}: {settings} names a tokenizer class of its own (auto_map), which is remote code, and models "
                "load without remote code here; use a tokenizer class transformers ships"
            )
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(
            f"{field}: {ref} holds no tokenizer ({', '.join(TOKENIZER_FILES)}); save the tokenizer beside the model"
        )
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(ref, trust_remote_code=False)
    except Exception as e:  # transformers fails in many ways on a damaged tokenizer
        raise UserError(
            f"{field}: transformers cannot load the tokenizer in {ref} "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); restore it"
        ) from None


def context_length(model_config: dict) -> int | None:
    """The longest sequence a model takes, as its config.json says (None when it does not say)."""
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = model_config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


class ScoringModel(NamedTuple):
    """The first local input (the base when it is local), as preflight loaded it: items are checked with its
    tokenizer against its context length (None when config.json does not say)."""

    tokenizer: Any
    context: int | None


def check_item_lengths(tasks: dict, scoring: ScoringModel | None) -> None:
    """Refuse items the scoring model cannot take, before the run folder exists: a multiple-choice choice that adds
    no token after its prompt, and a prompt (with its longest continuation) past the model's context."""
    from mergekit_evo.scoring.tasks import NativeTask

    native = {name: task for name, task in tasks.items() if isinstance(task, NativeTask)}
    if not native or scoring is None:
        return
    tokenizer, limit = scoring
    for name, task in native.items():
        for split in ("items", "validation_items", "test_items"):
            if not getattr(task, split):
                continue
            # encoded as scoring encodes them, and kept: the run's scorer reuses this encoding for every candidate
            encoded = task.encoded(tokenizer, split)
            for position, item in enumerate(getattr(task, split)):
                where = f"tasks.{name}.{split}: item {item.id!r}"
                context = len(encoded.contexts[position])
                if task.config.mode == "mc":
                    for choice, continuation in zip(item.choices, encoded.continuations[position]):
                        if not continuation:
                            raise UserError(f"{where}: choice {choice!r} adds no token to its prompt; give it text")
                        if limit is not None and context + len(continuation) > limit:
                            raise UserError(
                                f"{where}: its prompt and choice {choice!r} take {context + len(continuation)} "
                                f"tokens, past the model's context ({limit}); shorten the prompt"
                            )
                elif limit is not None:
                    answer = len(tokenizer(item.target or "", add_special_tokens=False)["input_ids"])
                    if context + answer + 8 > limit:
                        raise UserError(
                            f"{where}: its prompt and answer do not fit the model's context ({limit} tokens)"
                        )


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


def check_inputs(config: EvolveConfig) -> ScoringModel | None:
    """Refuse input models that cannot be merged with each other, in one line naming the model and the difference.
    Returns the first local input's tokenizer and context, for `check_item_lengths` (None when no input is local)."""
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
        return None
    reference: tuple[str, str, dict, dict] | None = None
    scoring: ScoringModel | None = None
    for field, ref in local:
        model_config = read_model_config(field, ref)
        shapes = weight_shapes(field, ref)
        check_config_matches_weights(field, ref, shapes)
        tokenizer = check_tokenizer(field, ref)
        if reference is None:
            reference = (field, ref, model_config, shapes)
            scoring = ScoringModel(tokenizer, context_length(model_config))
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
    return scoring
