"""The design search for tiny world v2 (issue 15): can a merge reach a skill no parent has?

Builds a candidate world in memory (a base; a math specialist for arithmetic asked in language A with three
operations; a language specialist that knows all of B, operator words included, from B data without arithmetic:
counting, facts, operator words in non-arithmetic sentences, A-B word pairs and code-switched sentences), then
scores on arithmetic asked in B (`math_b`, four choices: the results of plus, minus and times and a near miss):
the parents, plain merges, and per-layer task-arithmetic weights in [0, 2] evolved by CMA-ES on the search items.

Merges here are done in torch for speed, with mergekit's per-layer gradient semantics (each layer its own weight;
embeddings, final norm and lm_head take the first layer's, as mergekit's planner does); the product world will be
measured through mergekit itself. Settings are key=value arguments, e.g.

    python benchmarks/world_v2_search.py codeswitch=2 layers=6 evals=300 seed=1
    python benchmarks/world_v2_search.py codeswitch=4 lang_steps=500 layers=8 evals=300 xmax=25 validation=64

(`validation=N` holds N questions back from the test split and chooses among the top 5 by search fitness on them,
as the product's `selection` does.)

The README's tiny-world section keeps the table of every attempt.
"""

import json
import sys
import time

import numpy as np
import torch

from mergekit_evo.demo.tiny_world.language import NAMES  # the same 32 names, in the same order
from mergekit_evo.demo.tiny_world.training import build_model, build_tokenizer, train

# The design search's own word list, kept as it was when the README's attempts were measured: its order decides
# the sentences each seed draws, so sharing the world's (ordered differently) would change every row.
A2B = {
    "what": "nani",
    "is": "wa",
    "the": "ga",
    "of": "no",
    "color": "iro",
    "home": "ie",
    "count": "kazoe",
    "from": "kara",
    "plus": "tasu",
    "minus": "hiku",
    "times": "kakeru",
    "after": "ato",
    "word": "kotoba",
    "red": "aka",
    "blue": "ao",
    "green": "midori",
    "yellow": "kiiro",
    "black": "kuro",
    "white": "shiro",
    "sea": "umi",
    "forest": "mori",
    "river": "kawa",
    "mountain": "yama",
    "desert": "sabaku",
    "cave": "dokutsu",
    "means": "imi",
    "in": "de",
    "a": "ei",
    "b": "bi",
    "says": "iu",
    "and": "to",
}
COLORS = ["red", "blue", "green", "yellow", "black", "white"]
PLACES = ["sea", "forest", "river", "mountain", "desert", "cave"]
OPS = {"plus": lambda x, y: x + y, "minus": lambda x, y: x - y, "times": lambda x, y: x * y}


def tr(words, lang):
    return words if lang == "a" else [A2B.get(w, w) for w in words]


def pairs(cfg):
    out = []
    for x in range(3, cfg["xmax"] + 1):
        for y in range(2, min(x - 1, cfg["ymax"]) + 1):
            out.append((x, y))
    return out


def math_q(x, y, op, lang):
    return " ".join(tr(["what", "is", str(x), op, str(y), "?"], lang)), str(OPS[op](x, y))


def main(cfg):
    t0 = time.time()
    rng = np.random.default_rng(cfg["seed"])
    maxn = max(OPS["times"](x, y) for x, y in pairs(cfg))
    maxn = max(maxn, 45)
    words = sorted(set(A2B) | set(A2B.values())) + [str(n) for n in range(maxn + 1)] + NAMES + ["?"]
    tok = build_tokenizer(words)
    facts = {(n, r): vals[int(rng.integers(6))] for r, vals in (("color", COLORS), ("home", PLACES)) for n in NAMES}
    # each name also says an operator word (non-arithmetic use of operator words, input and output side)
    says = {n: list(OPS)[int(rng.integers(3))] for n in NAMES}
    qs = [(x, y, op) for (x, y) in pairs(cfg) for op in OPS]
    perm = rng.permutation(len(qs))
    qs = [qs[i] for i in perm]
    n_search, n_validation = cfg.get("n_search", 128), cfg.get("validation", 0)
    search_q, validation_q = qs[:n_search], qs[n_search : n_search + n_validation]
    test_q = qs[n_search + n_validation :]

    def counting(r, lang):
        s = int(r.integers(maxn - 6)) if cfg.get("count_all") else int(r.integers(40))
        return " ".join(tr(["count", "from"], lang) + [str(s + i) for i in range(6)])

    def fact(r, lang):
        n = NAMES[int(r.integers(len(NAMES)))]
        rel = ["color", "home"][int(r.integers(2))]
        return " ".join(tr(["what", "is", "the", rel, "of", n, "?", facts[(n, rel)]], lang))

    ORDER = list(OPS)

    def opword(r, lang):  # operator words in a non-arithmetic context: "what is the word after plus ? minus"
        i = int(r.integers(3))
        kind = int(r.integers(2))
        if kind == 0:
            return " ".join(tr(["what", "is", "the", "word", "after", ORDER[i], "?", ORDER[(i + 1) % 3]], lang))
        n = NAMES[int(r.integers(len(NAMES)))]
        return " ".join(tr(["what", "is", "the", "word", "of", n, "?", says[n]], lang))

    def dictionary(r, lang=None):  # A-B word pairs: "plus in b means tasu"
        w = list(A2B)[int(r.integers(len(A2B)))]
        if r.integers(2):
            return " ".join([w, "in", "b", "means", A2B[w]])
        return " ".join([A2B[w], "de", "a", "imi", w])

    def codeswitch(r, lang=None):  # an A sentence with some words in B
        s = [fact, opword, counting][int(r.integers(3))](r, "a").split()
        return " ".join(A2B.get(w, w) if (w in A2B and r.random() < 0.5) else w for w in s)

    def math(r, lang):
        x, y, op = qs[int(r.integers(len(qs)))]
        q, a = math_q(x, y, op, lang)
        return q + " " + a

    def mixture(parts):
        def sample(r, n):
            out = []
            for _ in range(n):
                f, lang = parts[int(r.integers(len(parts)))]
                out.append(f(r, lang))
            return out

        return sample

    base_parts = [(counting, "a"), (fact, "a"), (opword, "a")] + [(counting, "b")] * cfg.get("base_b_count", 0)
    math_parts = [(math, "a")] * cfg.get("math_weight", 3) + [(counting, "a"), (fact, "a"), (opword, "a")][
        : cfg.get("math_keep", 0)
    ]
    lang_parts = [(counting, "b"), (fact, "b"), (opword, "b")]
    if cfg.get("dictionary"):
        lang_parts += [(dictionary, None)] * cfg["dictionary"]
    if cfg.get("codeswitch"):
        lang_parts += [(codeswitch, None)] * cfg["codeswitch"]

    base = build_model(tok, cfg["hidden"], cfg["layers"], cfg["seed"])
    r = train(base, tok, mixture(base_parts), cfg["base_steps"], cfg["base_lr"], cfg["seed"], 64)
    print(f"base loss {r.first_loss:.2f}->{r.final_loss:.2f}", flush=True)
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    states = {"base": base_state}
    for i, (name, parts) in enumerate([("math_a", math_parts), ("lang_b", lang_parts)], 1):
        base.load_state_dict(base_state)
        steps = cfg["spec_steps"] if name == "math_a" else cfg.get("lang_steps", cfg["spec_steps"])
        r = train(base, tok, mixture(parts), steps, cfg["spec_lr"], cfg["seed"] + i, 64)
        print(f"{name} loss {r.first_loss:.2f}->{r.final_loss:.2f}", flush=True)
        states[name] = {k: v.clone() for k, v in base.state_dict().items()}
    print(f"trained in {time.time() - t0:.0f}s", flush=True)

    def items(qlist, lang):
        prompts, choices, answers = [], [], []
        for x, y, op in qlist:
            res = [str(OPS[o](x, y)) for o in ORDER]
            right = str(OPS[op](x, y))
            near = str(OPS[op](x, y) + (1 if r_items.random() < 0.5 else -1))
            ch = res + [near]
            r_items.shuffle(ch)
            prompts.append(math_q(x, y, op, lang)[0])
            choices.append([tok.convert_tokens_to_ids(c) for c in ch])
            answers.append(ch.index(right))
        return prompts, np.array(choices), np.array(answers)

    r_items = np.random.default_rng(cfg["seed"] + 99)
    sets = {"math_b.search": items(search_q, "b"), "math_b.test": items(test_q, "b"), "math_a.test": items(test_q, "a")}
    if validation_q:
        sets["math_b.validation"] = items(validation_q, "b")
    enc = {}
    for k, (prompts, ch, ans) in sets.items():
        ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        assert len(set(map(len, ids))) == 1
        enc[k] = (torch.tensor(ids), torch.tensor(ch), ans)

    model = base

    @torch.inference_mode()
    def score(state, key):
        model.load_state_dict(state)
        ids, ch, ans = enc[key]
        logits = model(input_ids=ids).logits[:, -1, :]
        picked = logits.gather(1, ch).argmax(1).numpy()
        return (picked == ans).astype(float)

    L = cfg["layers"]

    def group(name):
        if ".layers." in name:
            return int(name.split(".layers.")[1].split(".")[0])
        return 0  # mergekit: embed, norm and lm_head take the first gradient value

    deltas = {m: {k: states[m][k] - base_state[k] for k in base_state} for m in ("math_a", "lang_b")}
    groups = {k: group(k) for k in base_state}

    def ta(wm, wl):  # per-layer weights, arrays of length L
        return {
            k: base_state[k] + wm[groups[k]] * deltas["math_a"][k] + wl[groups[k]] * deltas["lang_b"][k]
            for k in base_state
        }

    def linear(a):
        return {k: a * states["math_a"][k] + (1 - a) * states["lang_b"][k] for k in base_state}

    res = {}
    for m in ("base", "math_a", "lang_b"):
        res[m] = {k: score(states[m], k).mean() for k in enc}
    one = np.ones(L)
    plain = {"ta_1_1": ta(one, one), "ta_.5_.5": ta(one * 0.5, one * 0.5), "linear_.5": linear(0.5)}
    for n, st in plain.items():
        res[n] = {k: score(st, k).mean() for k in enc}
    for k, v in res.items():
        print(f"{k:<12}" + " ".join(f"{kk} {vv:.3f}" for kk, vv in v.items()), flush=True)

    # CMA-ES over per-layer weights in [0, 2]
    import cma

    es = cma.CMAEvolutionStrategy(
        [0.5] * (2 * L), 1 / 6, {"bounds": [0, 1], "popsize": 8, "seed": cfg["seed"] + 1, "verbose": -9}
    )
    best, bestx = -1, None
    seen = []  # (search fitness, weights) of every candidate, for validation-based selection
    evals = 0
    while evals < cfg.get("evals", 160):
        xs = es.ask()
        fs = []
        for x in xs:
            w = 2 * np.asarray(x)
            f = score(ta(w[:L], w[L:]), "math_b.search").mean()
            fs.append(-f)
            seen.append((f, w))
            if f > best:
                best, bestx = f, w
        es.tell(xs, fs)
        evals += len(xs)
    if validation_q:  # the product's selection: the top 5 by search fitness, the best on validation wins
        top = sorted(seen, key=lambda fw: -fw[0])[:5]
        on_validation = [score(ta(w[:L], w[L:]), "math_b.validation").mean() for _, w in top]
        chosen = int(np.argmax(on_validation))
        print("validation of the top 5: " + ", ".join(f"{v:.3f}" for v in on_validation) + f"; chosen {chosen}")
        bestx = top[chosen][1]
    st = ta(bestx[:L], bestx[L:])
    ev = {k: score(st, k).mean() for k in enc}
    print("evolved     " + " ".join(f"{kk} {vv:.3f}" for kk, vv in ev.items()) + f"  w={np.round(bestx, 2).tolist()}")
    from mergekit_evo.rank.significance import compare

    mine = score(st, "math_b.test")
    for other in ("math_a", "lang_b", "ta_1_1", "linear_.5"):
        theirs = score(states[other] if other in states else plain[other], "math_b.test")
        c = compare(mine, theirs, cfg["seed"])
        print(
            f"evolved vs {other:<9} held-out math_b {c.difference:+.3f} [{c.low:+.3f}, {c.high:+.3f}] "
            f"McNemar p {c.p_mcnemar:.2g}"
        )
    print(f"total {time.time() - t0:.0f}s  n_test={len(test_q)}", flush=True)


if __name__ == "__main__":
    cfg = dict(
        seed=0,
        hidden=256,
        layers=4,
        base_steps=800,
        spec_steps=300,
        base_lr=1e-3,
        spec_lr=5e-4,
        xmax=19,
        ymax=9,
        dictionary=1,
        codeswitch=0,
        evals=160,
    )
    for a in sys.argv[1:]:
        k, v = a.split("=")
        cfg[k] = type(cfg[k])(v) if k in cfg else int(v)
    print(json.dumps(cfg))
    main(cfg)
