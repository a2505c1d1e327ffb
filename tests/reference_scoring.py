"""Score a causal LM on items, one 0/1 per item, with plain batched transformers.

Multiple choice follows lm-eval's `acc`: the choice whose continuation (`" " + choice`) has the highest summed
log-likelihood after the prompt wins. Generation is greedy and counts an exact match of the stripped text. Keeping
the same conventions as lm-eval means a task gives the same per-item answers through either backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from mergekit_evo.scoring.items import Item


def _device(model: PreTrainedModel) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def continuation_logprobs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 64,
) -> np.ndarray:
    """Summed log-probability of each continuation given its context, batched with right padding."""
    encoded = []
    for context, continuation in pairs:
        context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
        whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
        encoded.append((whole, len(context_ids)))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = _device(model)
    out = np.empty(len(encoded), dtype=np.float64)
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, (ids, _) in enumerate(chunk):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = 1
        logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        for row, (ids, n_context) in enumerate(chunk):
            positions = torch.arange(n_context - 1, len(ids) - 1)
            targets = torch.tensor(ids[n_context:])
            out[start + row] = logprobs[row, positions, targets].sum().item()
    return out


def score_multiple_choice(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[Item],
    batch_size: int = 64,
) -> np.ndarray:
    pairs = [(item.prompt, " " + choice) for item in items for choice in item.choices]
    logprobs = continuation_logprobs(model, tokenizer, pairs, batch_size)
    scores = np.empty(len(items), dtype=np.float64)
    offset = 0
    for i, item in enumerate(items):
        n = len(item.choices)
        scores[i] = float(int(np.argmax(logprobs[offset : offset + n])) == item.answer)
        offset += n
    return scores


@torch.inference_mode()
def score_generation(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[Item],
    batch_size: int = 64,
    max_new_tokens: int = 8,
) -> np.ndarray:
    device = _device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    scores = np.empty(len(items), dtype=np.float64)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        ids = [tokenizer(item.prompt, add_special_tokens=False)["input_ids"] for item in chunk]
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, x in enumerate(ids):
            input_ids[row, width - len(x) :] = torch.tensor(x)
            mask[row, width - len(x) :] = 1
        generated = cast(Any, model).generate(  # torch's Module.__getattr__ hides generate from type checkers
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
            eos_token_id=tokenizer.eos_token_id,
        )
        for row, item in enumerate(chunk):
            text = str(tokenizer.decode(generated[row, width:], skip_special_tokens=True))
            scores[start + row] = float(text.strip() == (item.target or "").strip())
    return scores


def score_items(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[Item],
    mode: str,
    batch_size: int = 64,
) -> np.ndarray:
    """Per-item 0/1 scores for `mode` 'mc' (log-likelihood choice) or 'gen' (greedy exact match)."""
    if mode == "mc":
        return score_multiple_choice(model, tokenizer, items, batch_size)
    return score_generation(model, tokenizer, items, batch_size)
