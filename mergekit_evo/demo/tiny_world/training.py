"""Tokenizer and training loop for the tiny world's models.

Word-level tokenizer (every word of both languages is one token) and a small Llama, so mergekit treats the models
exactly as it treats real Llama checkpoints. Training is plain AdamW on full sentences with a fixed seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"


def build_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate([PAD, UNK, EOS] + words)}
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, unk_token=UNK, eos_token=EOS, model_max_length=64
    )


def build_model(tokenizer: PreTrainedTokenizerFast, hidden: int, layers: int, seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 64),
        max_position_embeddings=64,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return LlamaForCausalLM(config)


@dataclass(frozen=True)
class TrainingResult:
    steps: int
    first_loss: float
    final_loss: float


def _batch(tokenizer: PreTrainedTokenizerFast, sentences: list[str]) -> dict[str, torch.Tensor]:
    ids = [tokenizer(s, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for s in sentences]
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = torch.tensor(x)
        mask[row, : len(x)] = 1
    labels = input_ids.masked_fill(mask == 0, -100)
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def train(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    sample_batch: Callable[[np.random.Generator, int], list[str]],
    steps: int,
    lr: float,
    seed: int,
    batch_size: int = 64,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainingResult:
    """Train on batches drawn by `sample_batch(rng, batch_size)`; deterministic for a given seed."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 20))
    model.train()
    losses: list[float] = []
    for step in range(steps):
        batch = _batch(tokenizer, sample_batch(rng, batch_size))
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if on_step is not None:
            on_step(step, losses[-1])
    model.eval()
    tail = losses[-min(20, len(losses)) :]
    return TrainingResult(steps=steps, first_loss=losses[0], final_loss=float(np.mean(tail)))
