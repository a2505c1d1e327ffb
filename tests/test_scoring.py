"""The native scorer does each piece of work once and gives the answers of the plain scorer it replaced.

`reference_scoring.py` is that plain scorer, kept as the reference: every choice scored as its own whole sequence,
items tokenized on every call. The comparison with lm-eval's own harness is in plugins/lm-eval/tests.
"""

from __future__ import annotations

import numpy as np
import pytest
import reference_scoring
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from mergekit_evo.config import TaskConfig
from mergekit_evo.demo.tiny_world.language import SKILLS
from mergekit_evo.merge.base import load_model
from mergekit_evo.scoring import native as native_scoring
from mergekit_evo.scoring.items import Item, read_items
from mergekit_evo.scoring.native import choice_logprobs, encode_items, encode_pair, score_encoded, tokenizer_key
from mergekit_evo.scoring.tasks import NativeTask
from mergekit_evo.testing import random_merges

TOLERANCE = 1e-4  # float32 log-probabilities summed over a few tokens; batches of other shapes round differently


# Items compared per task and split: every facts item, and the first 128 of the 536 and 256 arithmetic ones (in the
# world's shuffled order). The reference scores each choice in a pass of its own; all 2,096 items took 2 minutes.
ITEMS_PER_SPLIT = 128


def world_items(world, skill):
    return {
        split: read_items(world / "tasks" / f"{skill}.{split}.jsonl", "mc")[:ITEMS_PER_SPLIT]
        for split in ("search", "test")
    }


def models_to_compare(world):
    for name in ("base", "math_a", "lang_b"):
        yield name, load_model(world / "models" / name)
    yield from random_merges(world)


def assert_same_as_reference(model, tokenizer, items, where):
    encoded = encode_items(tokenizer, items, "mc")
    ours = choice_logprobs(model, encoded, range(len(items)))
    pairs = [(item.prompt, " " + choice) for item in items for choice in item.choices]
    reference = reference_scoring.continuation_logprobs(model, tokenizer, pairs)
    np.testing.assert_allclose(np.concatenate(ours), reference, rtol=0, atol=TOLERANCE, err_msg=where)
    bounds = np.cumsum([0] + [len(item.choices) for item in items])
    # the reference's answers, as its score_items reads them from these log-probabilities
    expected = [float(np.argmax(reference[a:b]) == item.answer) for a, b, item in zip(bounds, bounds[1:], items)]
    answers = score_encoded(model, tokenizer, encoded)
    np.testing.assert_array_equal(answers, expected, where)
    return answers


@pytest.mark.slow
def test_every_world_task_gets_the_reference_answers_for_the_inputs_and_eight_random_merges(tiny_world):
    items = {skill: world_items(tiny_world, skill) for skill in SKILLS}
    accuracies = []
    for name, loaded in models_to_compare(tiny_world):
        for skill, splits in items.items():
            for split, chosen in splits.items():
                answers = assert_same_as_reference(loaded.model, loaded.tokenizer, chosen, f"{name} {skill} {split}")
                accuracies.append(answers.mean())
    assert 0.1 < np.mean(accuracies) < 0.9  # right and wrong answers both compared


def random_llama(vocab=512, seed=0):
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


def multi_token_items(tiny_world, count=60, seed=0):
    """Items whose choices run 1 to 5 words, so a choice's later tokens run on the prompt's cache; prompts of
    several lengths, and one prompt ending in a space (lm-eval moves it into the choices)."""
    rng = np.random.default_rng(seed)
    words = [item.prompt.split()[-2] for item in read_items(tiny_world / "tasks" / "math_a.search.jsonl", "mc")]
    items = []
    for n in range(count):
        prompt = " ".join(rng.choice(words, size=int(rng.integers(1, 12))))
        choices = tuple(" ".join(rng.choice(words, size=int(rng.integers(1, 6)))) for _ in range(4))
        items.append(Item(id=str(n), prompt=prompt + (" " if n == 0 else ""), choices=choices, answer=n % 4))
    return items


def test_choices_of_several_tokens_give_the_reference_logprobs_on_the_cache_and_without_it(tiny_world, monkeypatch):
    tokenizer = AutoTokenizer.from_pretrained(tiny_world / "models" / "base")
    items = multi_token_items(tiny_world)
    encoded = encode_items(tokenizer, items, "mc")
    assert max(len(c) for conts in encoded.continuations for c in conts) >= 4  # the cache path is exercised
    model = random_llama(vocab=len(tokenizer))
    items = items[1:]  # the reference scorer keeps a prompt's trailing space in the prompt; lm-eval moves it
    assert_same_as_reference(model, tokenizer, items, "on the cache")
    pairs = [(item.prompt, " " + choice) for item in items for choice in item.choices]
    reference = reference_scoring.continuation_logprobs(model, tokenizer, pairs)
    for batch_size in (1, 7):  # one prompt per batch, and batches that split one prompt's longer choices
        ours = choice_logprobs(model, encode_items(tokenizer, items, "mc"), range(len(items)), batch_size=batch_size)
        np.testing.assert_allclose(np.concatenate(ours), reference, rtol=0, atol=TOLERANCE)
    monkeypatch.setattr(native_scoring, "_returned_cache", lambda result: None)  # a model that keeps no cache
    assert_same_as_reference(model, tokenizer, items, "without a cache")


def test_a_subset_is_scored_in_the_order_asked(tiny_world):
    loaded = load_model(tiny_world / "models" / "math_a")
    items = read_items(tiny_world / "tasks" / "math_b.search.jsonl", "mc")
    encoded = encode_items(loaded.tokenizer, items, "mc")
    every = score_encoded(loaded.model, loaded.tokenizer, encoded)
    subset = [17, 3, 99, 3, 0]
    np.testing.assert_array_equal(score_encoded(loaded.model, loaded.tokenizer, encoded, subset), every[subset])


def test_equal_logprobs_go_to_the_first_choice_as_in_lm_eval(tiny_world):
    loaded = load_model(tiny_world / "models" / "base")
    same = [Item(id="a", prompt="nani wa 3 tasu 4 ?", choices=("7", "7"), answer=a) for a in (0, 1)]
    scores = score_encoded(loaded.model, loaded.tokenizer, encode_items(loaded.tokenizer, same, "mc"))
    assert scores.tolist() == [1.0, 0.0]


def test_pairs_are_split_as_lm_eval_splits_them(tiny_world):
    tokenizer = AutoTokenizer.from_pretrained(tiny_world / "models" / "base")
    context, continuation = encode_pair(tokenizer, "nani wa 3 tasu ", "4")  # the space moves to the continuation
    assert (context, continuation) == encode_pair(tokenizer, "nani wa 3 tasu", " 4")
    empty = encode_pair(tokenizer, "", " 4")  # an empty prompt is scored after the prefix token
    assert empty[0] == (native_scoring.prefix_token_id(tokenizer),) and empty[1]


def test_a_task_encodes_its_items_once_for_every_candidate_s_tokenizer(tiny_world):
    task = NativeTask(config=TaskConfig(name="math_b", items=tiny_world / "tasks" / "math_b.search.jsonl"))
    first = load_model(tiny_world / "models" / "math_a")
    again = load_model(tiny_world / "models" / "lang_b")  # another tokenizer object, the same tokenizer
    assert first.tokenizer is not again.tokenizer
    assert tokenizer_key(first.tokenizer) == tokenizer_key(again.tokenizer)
    task.score(first, range(10))
    encoded = task.encoded(first.tokenizer)
    task.score(again, range(20))
    assert task.encoded(again.tokenizer) is encoded and len(task._encoded) == 1
    other = AutoTokenizer.from_pretrained(tiny_world / "models" / "base")
    other.add_tokens(["zzz"])  # a tokenizer that tokenizes differently is not taken for the same one
    assert tokenizer_key(other) != tokenizer_key(first.tokenizer)


def test_generation_gives_the_reference_exact_matches(tiny_world):
    # the math specialist: partly right in generation (0.6-0.7) on every world, so the equality means something
    loaded = load_model(tiny_world / "models" / "math_a")
    items = read_items(tiny_world / "tasks" / "math_a.search.jsonl", "gen")
    ours = score_encoded(loaded.model, loaded.tokenizer, encode_items(loaded.tokenizer, items, "gen"))
    reference = reference_scoring.score_items(loaded.model, loaded.tokenizer, items, "gen")
    np.testing.assert_array_equal(ours, reference)
    assert 0 < ours.mean() < 1
