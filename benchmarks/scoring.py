"""Per-candidate scoring time: the native scorer before and after issue 29, and lm-eval's HFLM, on the same items.

- `demo`: the demo's search items (world v2's math_b, 112 after the validation share is held back), scored by the
  world's plain task-arithmetic merge, single-token choices;
- `synthetic`: a randomly initialised 100M-parameter Llama (hidden 768, 8 layers, 32,000-token vocabulary), 200 items
  of 64-token prompts with 4 choices of 1 to 5 tokens, as a real multiple-choice benchmark has.

`before` is the scorer this project shipped until issue 29 (tests/reference_scoring.py: each choice its own whole
sequence, the items tokenized on every call); `after` is mergekit_evo.scoring.native with its items encoded once per
run, as a run scores; `HFLM` is lm-eval's model class on the same model object, its requests built once, timing
`loglikelihood` only (what lm-eval itself spends per candidate on top of it, building requests and computing
metrics, is in the README). Each is timed `--repeats` times after a warm-up (the synthetic case: once, cold); the table gives the best. The three
must agree on every answer; the table says so.

    python benchmarks/scoring.py                        # both cases, on the CPU
    python benchmarks/scoring.py --case demo --repeats 10
    python benchmarks/scoring.py --device cuda          # on a GPU (benchmarks/device/gpu_check.sh runs it)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the reference scorer lives with the tests


def demo_case(device: str):
    from mergekit_evo.config import TaskConfig
    from mergekit_evo.demo.tiny_world import ensure_world, task_file
    from mergekit_evo.merge.base import load_model
    from mergekit_evo.scoring.splits import with_validation
    from mergekit_evo.scoring.tasks import NativeTask

    world = ensure_world(log=lambda _: None)
    native = NativeTask(config=TaskConfig(name="math_b", items=task_file(world, "math_b", "search"), validation=0.2))
    held = with_validation(native, 0)  # the demo's split: seed 0, a validation share of 0.2
    items = [native.items[i] for i in held.search_positions]
    loaded = load_model(world / "merges" / "task_arithmetic_1.0")
    return "demo: world v2 math_b search items, the plain merge", loaded.model.to(device), loaded.tokenizer, items


def synthetic_case(device: str, count: int):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from mergekit_evo.demo.tiny_world import ensure_world
    from mergekit_evo.scoring.items import Item

    world = ensure_world(log=lambda _: None)
    tokenizer = AutoTokenizer.from_pretrained(world / "models" / "base")  # one token per word
    words = [w for w in tokenizer.get_vocab() if w.isalnum()]
    rng = np.random.default_rng(0)
    items = [
        Item(
            id=str(n),
            prompt=" ".join(rng.choice(words, 64)),
            choices=tuple(" ".join(rng.choice(words, int(rng.integers(1, 6)))) for _ in range(4)),
            answer=int(rng.integers(4)),
        )
        for n in range(count)
    ]
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=768,
        intermediate_size=2048,
        num_hidden_layers=8,
        num_attention_heads=12,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config).eval().to(device)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    label = f"synthetic: {params:.0f}M-parameter Llama, {count} items, 64-token prompts, 4 choices of 1-5 tokens"
    return label, model, tokenizer, items


def best_of(repeats: int, work) -> tuple[float, object]:
    result = work() if repeats > 1 else None  # a warm-up, when there are repeats to spare
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = work()
        seconds.append(time.perf_counter() - started)
    return min(seconds), result


def hflm_scorer(model, tokenizer, items, batch_size: int):
    """lm-eval's HFLM over the model object, its requests built here once; the scoring reads `acc` as lm-eval does."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_batch_size=batch_size)
    requests = [
        Instance(request_type="loglikelihood", doc={}, arguments=(item.prompt, " " + choice), idx=c)
        for item in items
        for c, choice in enumerate(item.choices)
    ]
    bounds = np.cumsum([0] + [len(item.choices) for item in items])

    def score():
        lls = [ll for ll, _ in lm.loglikelihood(requests, disable_tqdm=True)]
        return np.array([float(np.argmax(lls[a:b]) == it.answer) for a, b, it in zip(bounds, bounds[1:], items)])

    return score


def measure(label: str, model, tokenizer, items, repeats: int, batch_size: int) -> None:
    import reference_scoring
    import torch

    from mergekit_evo.scoring.native import encode_items, score_encoded

    def synced(work):
        def run():
            out = work()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            return out

        return run

    before_s, before = best_of(
        repeats, synced(lambda: reference_scoring.score_items(model, tokenizer, items, "mc", batch_size))
    )
    encoded = encode_items(tokenizer, items, "mc")
    after_s, after = best_of(repeats, synced(lambda: score_encoded(model, tokenizer, encoded, None, batch_size)))
    try:
        hflm_s, hflm = best_of(repeats, synced(hflm_scorer(model, tokenizer, items, batch_size)))
    except ImportError:  # the GPU machine has no lm-eval (benchmarks/device/prepare.sh does not carry it)
        hflm_s, hflm = float("nan"), after
    same = np.array_equal(before, after) and np.array_equal(after, hflm)
    print(f"\n{label}; batch size {batch_size}, best of {repeats}\n")
    print("| scorer | seconds per candidate | vs before |")
    print("| --- | ---: | ---: |")
    print(f"| before: each choice a whole sequence, items tokenized per call | {before_s:.3f} | 1.0x |")
    print(f"| after: each prompt once, items encoded once | {after_s:.3f} | {before_s / after_s:.1f}x faster |")
    print(f"| lm-eval's HFLM.loglikelihood, requests built once | {hflm_s:.3f} | {before_s / hflm_s:.1f}x faster |")
    print(f"\nthe same answer on every item from all three: {'yes' if same else 'NO'}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=("demo", "synthetic", "both"), default="both")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--synthetic-repeats", type=int, default=1, help="the 100M model is slow on a CPU: one timing, no warm-up"
    )
    parser.add_argument("--items", type=int, default=200, help="items of the synthetic case")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)

    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    with torch.inference_mode():
        if args.case in ("demo", "both"):
            measure(*demo_case(args.device), args.repeats, args.batch_size)
        if args.case in ("synthetic", "both"):
            measure(*synthetic_case(args.device, args.items), args.synthetic_repeats, args.batch_size)


if __name__ == "__main__":
    main()
