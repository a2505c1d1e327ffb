"""Per-candidate merge time: the `resident` merger against mergekit `run_merge` to disk plus a reload.

Synthetic Llama models (random weights, built here at run time: a base and two fine-tunes that are the base plus
small noise) of about 10M, 100M and 500M parameters, merged with linear, task_arithmetic, ties and dare_ties. Each
time is also given as a ratio to the memory-bandwidth floor: the bytes of the sources read plus the bytes of the
merged model written, over the bandwidth of a large tensor copy measured on the same machine.

    python benchmarks/merge_speed.py                      # all sizes and methods, CPU
    python benchmarks/merge_speed.py --sizes 10M,100M --repeats 3 --device cuda

The time spent inside mergekit's merge-method tasks (the arithmetic, which both paths run and the resident merger
must not replace) is reported on its own, so what the resident merger itself costs is the difference.
Both paths run with PyTorch's transparent huge pages for large CPU tensors, as the `mergekit-evo` command does.
"""

from __future__ import annotations

import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # read once by PyTorch's CPU allocator: before torch is imported

import argparse
import contextlib
import gc
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

SIZES = {  # hidden, intermediate, layers, vocab
    "10M": (256, 1024, 4, 8000),
    "100M": (768, 2048, 11, 16000),
    "500M": (1536, 4096, 14, 32000),
}
METHODS = {
    "linear": {"weight": 0.5},
    "task_arithmetic": {"weight": 0.7},
    "ties": {"weight": 0.7, "density": 0.5},
    "dare_ties": {"weight": 0.7, "density": 0.5},
}


def word_tokenizer(vocab: int):
    """A word-level tokenizer over `vocab` made-up words, so each model folder is complete, as mergekit expects."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {"<unk>": 0, "<pad>": 1, **{f"w{i}": i for i in range(2, vocab)}}
    tokenizer = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>")


def build_models(root: Path, size: str, seed: int = 0) -> tuple[list[Path], int]:
    """A base Llama with random weights and two 'fine-tunes' (base + 1% noise), saved as safetensors."""
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden, intermediate, layers, vocab = SIZES[size]
    config = LlamaConfig(
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=hidden // 64,
        vocab_size=vocab,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    n_params = sum(p.numel() for p in model.parameters())
    tokenizer = word_tokenizer(vocab)
    paths = []
    for i, name in enumerate(("base", "ft_a", "ft_b")):
        if i:
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.01 * torch.randn_like(p))
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        paths.append(root / name)
    del model
    gc.collect()
    return paths, n_params


def copy_bandwidth(device: str, n_bytes: int = 1 << 30) -> float:
    """Bytes moved per second (read + write) by a large tensor copy: the floor any merge is held to."""
    src = torch.rand(n_bytes // 4, device=device)
    dst = torch.empty_like(src)
    times = []
    for _ in range(5):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        dst.copy_(src)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    del src, dst
    return 2 * n_bytes / min(times)


def recipe(paths: list[Path], method: str) -> dict:
    base, a, b = (str(p) for p in paths)
    params = METHODS[method]
    data = {
        "merge_method": method,
        "dtype": "float32",
        "models": [{"model": a, "parameters": params}, {"model": b, "parameters": params}],
    }
    if method != "linear":
        data["base_model"] = base
    return data


def time_disk(config, scratch: Path, device: str) -> float:
    """mergekit's run_merge with its arithmetic on `device`, then the model loaded onto it: the `disk` merger's way."""
    from mergekit_evo.merge.base import load_model, merge_to_disk

    out = scratch / "out"
    synchronize(device)
    start = time.perf_counter()
    merge_to_disk(config, out, seed=0, device=device)
    model = load_model(out, "float32", device)
    synchronize(device)
    elapsed = time.perf_counter() - start
    del model
    shutil.rmtree(out)
    return elapsed


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@contextlib.contextmanager
def arithmetic_clock(device: str):
    """Seconds spent inside mergekit's merge-method tasks while the block runs (a list of one, filled in place)."""
    from mergekit.merge_methods.task_adapter import ExecuteMergeMethodTask

    spent = [0.0]
    original = ExecuteMergeMethodTask.execute

    def timed(self, **kwargs):
        synchronize(device)
        start = time.perf_counter()
        result = original(self, **kwargs)
        synchronize(device)
        spent[0] += time.perf_counter() - start
        return result

    ExecuteMergeMethodTask.execute = timed
    try:
        yield spent
    finally:
        ExecuteMergeMethodTask.execute = original


def time_resident(merger, config) -> tuple[float, float]:
    """Seconds for one candidate, and the part of them spent in mergekit's merge methods."""
    with arithmetic_clock(merger.device) as arithmetic:
        synchronize(merger.device)
        start = time.perf_counter()
        merger.merge_into_model(config, seed=0)
        synchronize(merger.device)
        return time.perf_counter() - start, arithmetic[0]


def run(sizes: list[str], methods: list[str], repeats: int, device: str, skip_disk: bool) -> list[dict]:

    from mergekit_evo.cli.common import quiet_libraries
    from mergekit_evo.config import EvolveConfig
    from mergekit_evo.merge.base import parse_merge_config
    from mergekit_evo.merge.memory import human_bytes
    from mergekit_evo.merge.resident import ResidentMerger

    quiet_libraries()
    bandwidth = copy_bandwidth(device)
    print(f"copy bandwidth on {device}: {human_bytes(bandwidth)}/s (read + write)\n\n{HEADER}", flush=True)
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="mergekit-evo-bench-") as tmp:
            root = Path(tmp)
            paths, n_params = build_models(root, size)
            model_bytes = (paths[0] / "model.safetensors").stat().st_size
            for method in methods:
                data = recipe(paths, method)
                n_sources = 3 if "base_model" in data else 2
                floor = (n_sources + 1) * model_bytes / bandwidth
                run_config = EvolveConfig.model_validate(
                    {
                        "models": [str(p) for p in paths[1:]],
                        "base_model": data.get("base_model"),
                        "merge_method": method,
                        "tasks": [{"name": "none", "items": "unused.jsonl"}],
                        "merger": {"name": "resident", "options": {"device": device}},
                    }
                )
                merger = ResidentMerger(config=run_config)
                first, _ = time_resident(merger, parse_merge_config(data))  # loads the sources
                timings = [time_resident(merger, parse_merge_config(data)) for _ in range(repeats)]
                resident, arithmetic = (statistics.median(t[i] for t in timings) for i in (0, 1))
                del merger
                gc.collect()
                disk = (
                    None
                    if skip_disk
                    else statistics.median(time_disk(parse_merge_config(data), root, device) for _ in range(repeats))
                )
                row = {
                    "size": size,
                    "params": n_params,
                    "method": method,
                    "device": device,
                    "disk_reload_s": disk,
                    "resident_s": resident,
                    "arithmetic_s": arithmetic,
                    "resident_first_s": first,
                    "floor_s": floor,
                    "speedup": disk / resident if disk else None,
                    "resident_over_floor": resident / floor,
                    "arithmetic_over_floor": arithmetic / floor,
                }
                rows.append(row)
                print(format_row(row), flush=True)
    return rows


HEADER = (
    "| size (params) | method | disk + reload | resident | speedup | of which mergekit's arithmetic | floor | "
    "resident / floor | arithmetic / floor | resident, first candidate |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def format_row(r: dict) -> str:
    disk = f"{r['disk_reload_s']:.2f} s" if r["disk_reload_s"] else "-"
    speedup = f"{r['speedup']:.1f}x" if r["speedup"] else "-"
    return (
        f"| {r['size']} ({r['params'] / 1e6:.0f}M) | {r['method']} | {disk} | {r['resident_s']:.3f} s | "
        f"{speedup} | {r['arithmetic_s']:.3f} s | {r['floor_s']:.3f} s | {r['resident_over_floor']:.1f}x | "
        f"{r['arithmetic_over_floor']:.1f}x | {r['resident_first_s']:.2f} s |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10M,100M,500M")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-disk", action="store_true", help="time only the resident merger")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    rows = run(args.sizes.split(","), args.methods.split(","), args.repeats, args.device, args.skip_disk)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
