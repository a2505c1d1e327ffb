"""Score a causal LM on items, one 0/1 per item, with plain transformers, doing each piece of work once.

Multiple choice follows lm-eval's `acc`: the choice whose continuation (`" " + choice`) has the highest summed
log-likelihood after the prompt wins, the first of equals on a tie (`np.argmax`, as lm-eval). Pairs are tokenized as
lm-eval's `_encode_pair` does: trailing spaces of the prompt move to the continuation, the whole text is encoded and
the continuation is what follows the prompt's own tokens; an empty prompt is replaced by the BOS (or EOS) token.
Generation is greedy and counts an exact match of the stripped text. Keeping lm-eval's conventions means a task gives
the same per-item answers through either backend (tests/test_scoring.py checks it on every world task).

Where the work goes, and why it is done once:
- items are tokenized once per tokenizer (`encode_items`), not again for every candidate: a run's items never change;
- a prompt runs through the model once for all its choices. Every choice's first token is read from the prompt's
  last logits, so single-token choices cost nothing more (lm-eval's `logits_cache` does the same). The rest of a
  longer choice runs on the prompt's cached keys and values: only the choice's own tokens pass through the model;
- logits and their log-softmax are taken only at the positions read, not over the whole sequence;
- prompts are batched in order of length, so a batch pads little.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from mergekit_evo.plugin.errors import UserError
from mergekit_evo.scoring.items import Item

Tokens = tuple[int, ...]


@dataclass(frozen=True)
class EncodedItems:
    """A list of items as token ids, for one tokenizer: what scoring needs, computed once per run."""

    mode: str
    contexts: tuple[Tokens, ...]
    continuations: tuple[tuple[Tokens, ...], ...]  # per item, per choice (multiple choice only)
    answers: tuple[int, ...]
    targets: tuple[str, ...]  # generation only

    def __len__(self) -> int:
        return len(self.contexts)


def _encode(tokenizer: PreTrainedTokenizerBase, text: str) -> Tokens:
    return tuple(tokenizer(text, add_special_tokens=False)["input_ids"])


def prefix_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token an empty prompt is scored after: BOS, else EOS (lm-eval's `prefix_token_id`)."""
    token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if token is None:
        raise UserError(
            "an item's prompt is empty, and the tokenizer has neither a BOS nor an EOS token to score it after; "
            "give every prompt text"
        )
    return int(token)


def encode_choices(
    tokenizer: PreTrainedTokenizerBase, context: str, continuations: Sequence[str]
) -> tuple[Tokens, tuple[Tokens, ...]]:
    """The context's token ids, encoded once, and each continuation's, split as lm-eval's causal `_encode_pair`
    splits each pair: the context's trailing spaces move into the continuation, the whole text is encoded, and the
    continuation is what follows the context's own tokens."""
    if not context:
        return (prefix_token_id(tokenizer),), tuple(_encode(tokenizer, c) for c in continuations)
    context_ids = _encode(tokenizer, context.rstrip())  # the whole text is the same either way: context + c
    return context_ids, tuple(_encode(tokenizer, context + c)[len(context_ids) :] for c in continuations)


def encode_pair(tokenizer: PreTrainedTokenizerBase, context: str, continuation: str) -> tuple[Tokens, Tokens]:
    """Context and continuation token ids, split as lm-eval's causal `_encode_pair` splits them."""
    context_ids, (continuation_ids,) = encode_choices(tokenizer, context, [continuation])
    return context_ids, continuation_ids


def encode_items(tokenizer: PreTrainedTokenizerBase, items: Sequence[Item], mode: str) -> EncodedItems:
    """Tokenize `items` for `mode` ('mc' or 'gen') once; `score_encoded` then scores any subset of them."""
    if mode == "mc":
        contexts, continuations = [], []
        for item in items:
            context, choices = encode_choices(tokenizer, item.prompt, [" " + choice for choice in item.choices])
            contexts.append(context)
            continuations.append(choices)
        return EncodedItems(
            mode, tuple(contexts), tuple(continuations), tuple(int(item.answer or 0) for item in items), ()
        )
    return EncodedItems(
        mode,
        tuple(_encode(tokenizer, item.prompt) for item in items),
        (),
        (),
        tuple(item.target or "" for item in items),
    )


_tokenizer_keys: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def tokenizer_key(tokenizer: PreTrainedTokenizerBase) -> str:
    """A key equal for tokenizers that tokenize alike, so items encoded once serve every candidate: a disk merge loads
    a fresh tokenizer object per candidate, but its content (the serialized fast tokenizer) is the same. A slow
    tokenizer has no such serialization and is keyed by the object itself."""
    try:
        return _tokenizer_keys[tokenizer]
    except (KeyError, TypeError):
        pass
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        content = type(tokenizer).__name__ + backend.to_str() + repr(sorted(tokenizer.special_tokens_map.items()))
        key = hashlib.sha256(content.encode()).hexdigest()
    else:
        key = f"object-{id(tokenizer)}"
    try:
        _tokenizer_keys[tokenizer] = key
    except TypeError:
        pass
    return key


def _device(model: PreTrainedModel) -> torch.device:
    return next(model.parameters()).device


@functools.lru_cache(maxsize=64)
def _forward_takes(model_class: Any, argument: str) -> bool:
    """Whether the class's forward takes `argument` (transformers versions and architectures differ)."""
    return argument in inspect.signature(model_class.forward).parameters


def _cache_argument(model_class: Any) -> str:
    """transformers 5.25 renamed `past_key_values` to `cache`; the old name still works there, with a warning."""
    return "cache" if _forward_takes(model_class, "cache") else "past_key_values"


def _returned_cache(result: Any) -> Any:
    for name in ("cache", "past_key_values"):
        if name in result.keys():
            return result[name]
    return None


def _padded(rows: Sequence[Sequence[int]], pad: int, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded ids and their attention mask: right padding for scoring (lm-eval's for causal models), left padding
    for generation (new tokens follow every prompt at once)."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        where = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, where] = torch.tensor(row, dtype=torch.long)
        mask[i, where] = 1
    return ids, mask


@torch.inference_mode()
def choice_logprobs(
    model: PreTrainedModel,
    encoded: EncodedItems,
    indices: Sequence[int],
    batch_size: int = 64,
    pad_token_id: int | None = None,
) -> list[np.ndarray]:
    """Summed log-probability of every choice of the items at `indices`, one array per item, in that order.

    One forward pass per prompt; the first token of every choice is read from its last position. Choices of more
    than one token then run their remaining tokens on a copy of the prompts' key/value cache, in batches of
    `batch_size` choices; a model that returns no `Cache` object runs those choices whole, prompt included.
    """
    device = _device(model)
    pad = pad_token_id if pad_token_id is not None else 0
    keep_logits = _forward_takes(cast(Any, type(model)), "logits_to_keep")
    out: list[np.ndarray] = [np.empty(len(encoded.continuations[i]), dtype=np.float64) for i in indices]
    # longest prompts first, as lm-eval: a batch that does not fit memory fails at once, and batches pad little
    order = sorted(range(len(indices)), key=lambda k: -len(encoded.contexts[indices[k]]))
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        contexts = [encoded.contexts[indices[k]] for k in batch]
        ids, mask = _padded(contexts, pad)
        last = torch.tensor([len(c) - 1 for c in contexts])
        longer = [  # (row, choice) of every choice with tokens after its first
            (row, c)
            for row, k in enumerate(batch)
            for c, cont in enumerate(encoded.continuations[indices[k]])
            if len(cont) > 1
        ]
        kwargs: dict[str, Any] = {"use_cache": bool(longer)}
        if keep_logits:  # the vocabulary projection only where it is read: each prompt's last position
            kept = torch.unique(last)
            kwargs["logits_to_keep"] = kept.to(device)
            columns = torch.searchsorted(kept, last)
        else:
            columns = last
        result = model(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
        first = torch.log_softmax(result.logits[torch.arange(len(batch)), columns.to(device)].float(), dim=-1)
        rows = [row for row, k in enumerate(batch) for _ in encoded.continuations[indices[k]]]
        tokens = [cont[0] for k in batch for cont in encoded.continuations[indices[k]]]
        read = first[torch.tensor(rows, device=device), torch.tensor(tokens, device=device)].double().cpu().numpy()
        offset = 0
        for k in batch:
            out[k][:] = read[offset : offset + len(out[k])]
            offset += len(out[k])
        if not longer:
            continue
        cache = _returned_cache(result)
        if not hasattr(cache, "batch_select_indices"):  # no cache, or an old model's tuple of tensors
            cache = None
        for chunk_start in range(0, len(longer), batch_size):
            chunk = longer[chunk_start : chunk_start + batch_size]
            conts = [encoded.continuations[indices[batch[row]]][c] for row, c in chunk]
            if cache is not None:
                rest = _rest_on_cache(model, cache, [row for row, _ in chunk], contexts, mask, conts, pad, device)
            else:
                rest = _rest_whole(model, [contexts[row] for row, _ in chunk], conts, pad, device)
            for (row, c), value in zip(chunk, rest):
                out[batch[row]][c] += value
    return out


def _rest_on_cache(
    model: PreTrainedModel,
    cache: Any,
    rows: list[int],
    contexts: list[Tokens],
    context_mask: torch.Tensor,
    continuations: list[Tokens],
    pad: int,
    device: torch.device,
) -> list[float]:
    """Log-probability of each continuation's tokens after its first, run on the prompts' cached keys and values.

    The cache holds the right-padded prompt batch; each row here takes its prompt's row (`rows`), attends to that
    prompt's real tokens only (the mask), and numbers its own tokens on from the prompt's length (position ids)."""
    picked = copy.deepcopy(cache)  # the prompt cache serves every chunk: select from a copy
    picked.batch_select_indices(torch.tensor(rows, device=device))
    inputs = [cont[:-1] for cont in continuations]  # token j+1 is predicted at token j
    ids, mask = _padded(inputs, pad)
    lengths = torch.tensor([len(contexts[row]) for row in rows])
    positions = lengths[:, None] + torch.arange(ids.shape[1])[None, :]
    full_mask = torch.cat([context_mask[rows], mask], dim=1)
    logits = model(
        input_ids=ids.to(device),
        attention_mask=full_mask.to(device),
        position_ids=positions.to(device),
        use_cache=True,
        **{_cache_argument(type(model)): picked},
    ).logits
    return _gathered(logits, continuations)


def _rest_whole(
    model: PreTrainedModel, contexts: list[Tokens], continuations: list[Tokens], pad: int, device: torch.device
) -> list[float]:
    """The same as `_rest_on_cache`, for a model without a key/value cache: prompt and choice run together."""
    ids, mask = _padded([ctx + cont[:-1] for ctx, cont in zip(contexts, continuations)], pad)
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
    return _gathered(logits, continuations, [len(ctx) for ctx in contexts])


def _gathered(logits: torch.Tensor, continuations: list[Tokens], offsets: list[int] | None = None) -> list[float]:
    """Sum of log p(cont[j+1]) read at position offset+j of each row: the tokens after each continuation's first."""
    values = []
    for i, cont in enumerate(continuations):
        offset = offsets[i] if offsets else 0
        rows = torch.log_softmax(logits[i, offset : offset + len(cont) - 1].float(), dim=-1).cpu()
        targets = torch.tensor(cont[1:], dtype=torch.long)
        values.append(float(rows[torch.arange(len(targets)), targets].sum().item()))
    return values


def score_multiple_choice(
    model: PreTrainedModel,
    encoded: EncodedItems,
    indices: Sequence[int],
    batch_size: int = 64,
    pad_token_id: int | None = None,
) -> np.ndarray:
    logprobs = choice_logprobs(model, encoded, indices, batch_size, pad_token_id)
    # np.argmax takes the first of equal values, as lm-eval's acc does
    return np.array(
        [float(int(np.argmax(lp)) == encoded.answers[i]) for i, lp in zip(indices, logprobs)], dtype=np.float64
    )


@torch.inference_mode()
def score_generation(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    encoded: EncodedItems,
    indices: Sequence[int],
    batch_size: int = 64,
    max_new_tokens: int = 8,
) -> np.ndarray:
    """Greedy generation with left padding, prompts batched by length; 1 for an exact match of the stripped text."""
    device = _device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    scores = np.empty(len(indices), dtype=np.float64)
    order = sorted(range(len(indices)), key=lambda k: -len(encoded.contexts[indices[k]]))
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        input_ids, mask = _padded([encoded.contexts[indices[k]] for k in batch], pad, left=True)
        width = input_ids.shape[1]
        generated = cast(Any, model).generate(  # torch's Module.__getattr__ hides generate from type checkers
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
            eos_token_id=tokenizer.eos_token_id,
        )
        for row, k in enumerate(batch):
            text = str(tokenizer.decode(generated[row, width:], skip_special_tokens=True))
            scores[k] = float(text.strip() == encoded.targets[indices[k]].strip())
    return scores


def score_encoded(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    encoded: EncodedItems,
    indices: Sequence[int] | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """Per-item 0/1 scores of the encoded items at `indices` (all when None), in that order."""
    chosen = list(range(len(encoded))) if indices is None else [int(i) for i in indices]
    if encoded.mode == "mc":
        return score_multiple_choice(model, encoded, chosen, batch_size, tokenizer.pad_token_id)
    return score_generation(model, tokenizer, encoded, chosen, batch_size)


def score_items(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[Item],
    mode: str,
    batch_size: int = 64,
) -> np.ndarray:
    """Per-item 0/1 scores for `mode` 'mc' (log-likelihood choice) or 'gen' (greedy exact match), tokenizing here;
    a task scoring the same items for many models encodes them once with `encode_items` and calls `score_encoded`."""
    return score_encoded(model, tokenizer, encode_items(tokenizer, items, mode), None, batch_size)
