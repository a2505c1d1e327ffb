"""The two synthetic languages of the tiny world, the sentences of each skill and each model's training text.

Language A is English-like; language B is a fixed word-for-word mapping of it (a stand-in for Japanese in the
Sakana experiment). Numbers and people's names are shared by both languages, as digits and proper nouns are in
real ones. Every skill is a question whose answer is a single word, so one format serves multiple choice
(log-likelihood over the choices) and exact-match generation.

World v2 makes the cross skill reachable only by merging. Arithmetic has three operations, and a question's
choices are the results of all three plus a near miss, so a model that reads the numbers but not the operator
word stays near 1/3. The math specialist learns arithmetic asked in A. The language specialist learns all of B,
operator words included, but never sees arithmetic: B counting, B facts, B sentences about the operator words,
A-B word pairs and A sentences with words switched to B. Arithmetic asked in B (`math_b`) is in no model's data.
World v4 trains the language specialist at four times the math specialist's learning rate (`WorldSpec.language_lr`),
so adding both task vectors in full interferes and per-layer weights matter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

OPERATIONS: dict[str, Callable[[int, int], int]] = {
    "plus": lambda x, y: x + y,
    "minus": lambda x, y: x - y,
    "times": lambda x, y: x * y,
}
# The question space: x in [X_MIN, X_MAX], y in [Y_MIN, min(x - 1, Y_MAX)], each operation; 792 questions, enough for
# 536 search items (a fifth of them for validation) and 256 held out (world v3).
X_MIN, X_MAX, Y_MIN, Y_MAX = 3, 31, 2, 12
COUNT_START_MAX, COUNT_LENGTH = 39, 5

WORDS_B = {
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
    "means": "imi",
    "in": "de",
    "a": "ei",
    "b": "bi",
}
COLORS_B = {"red": "aka", "blue": "ao", "green": "midori", "yellow": "kiiro", "black": "kuro", "white": "shiro"}
PLACES_B = {
    "sea": "umi",
    "forest": "mori",
    "river": "kawa",
    "mountain": "yama",
    "desert": "sabaku",
    "cave": "dokutsu",
}
A_TO_B = {**WORDS_B, **COLORS_B, **PLACES_B}
NAMES = (
    "Ami Ben Cai Dov Eli Fay Gus Hal Ivo Jun Kai Lev Mia Ned Oto Pia "
    "Rex Sol Tia Uma Vic Wes Xia Yul Zed Abe Bea Cid Dax Eve Fio Gil"
).split()
RELATIONS = {"color": COLORS_B, "home": PLACES_B}

# The skills a world measures. The first two are what the specialists learn; `math_b` is the target skill that
# neither was trained on; `facts_a` is what the base already knows.
SKILLS = ("math_a", "facts_b", "math_b", "facts_a")
SKILL_DESCRIPTIONS = {
    "math_a": "arithmetic (plus, minus, times) asked and answered in language A (the math specialist's skill)",
    "facts_b": "facts about people asked and answered in language B (the language specialist's skill)",
    "math_b": "arithmetic asked in language B (the target skill: in no model's training data)",
    "facts_a": "facts about people asked in language A (the base model's knowledge)",
}


def translate(words: list[str], language: str) -> list[str]:
    """Map language-A words to `language`; words without a translation (numbers, names, '?') stay as they are."""
    if language == "a":
        return list(words)
    return [A_TO_B.get(w, w) for w in words]


def operand_pairs() -> list[tuple[int, int]]:
    return [(x, y) for x in range(X_MIN, X_MAX + 1) for y in range(Y_MIN, min(x - 1, Y_MAX) + 1)]


def arithmetic() -> list[tuple[int, int, str]]:
    """Every arithmetic question as (x, y, operation), in a fixed order."""
    return [(x, y, op) for x, y in operand_pairs() for op in OPERATIONS]


def max_number() -> int:
    largest = max(f(x, y) for x, y in operand_pairs() for f in OPERATIONS.values())
    return max(largest + 2, COUNT_START_MAX + COUNT_LENGTH)


def vocabulary() -> list[str]:
    """Every word either language can produce, in a fixed order (the tokenizer's ids follow it)."""
    numbers = [str(n) for n in range(max_number() + 1)]
    return list(A_TO_B) + list(A_TO_B.values()) + numbers + list(NAMES) + ["?"]


@dataclass(frozen=True)
class Question:
    """One question of a skill: the prompt words, the answer word and the answer's alternatives."""

    prompt: tuple[str, ...]
    answer: str
    alternatives: tuple[str, ...]


def facts_table(rng: np.random.Generator) -> dict[tuple[str, str], str]:
    """Who has which colour and home, in language A. Drawn once per world from its seed."""
    table = {}
    for relation, values in RELATIONS.items():
        options = list(values)
        for name in NAMES:
            table[(name, relation)] = options[int(rng.integers(len(options)))]
    return table


def math_question(x: int, y: int, operation: str, language: str) -> Question:
    """`what is 7 minus 3 ?`; the alternatives are the other operations' results, then near misses.

    Items keep the first two alternatives and one near miss, so the numbers alone leave three equally likely
    choices and only the operator word decides.
    """
    prompt = translate(["what", "is", str(x), operation, str(y), "?"], language)
    answer = OPERATIONS[operation](x, y)
    others = [f(x, y) for op, f in OPERATIONS.items() if op != operation]
    near = [answer + d for d in (1, -1, 2, -2) if answer + d >= 0 and answer + d not in others]
    return Question(tuple(prompt), str(answer), tuple(str(n) for n in others + near))


def fact_question(name: str, relation: str, facts: dict[tuple[str, str], str], language: str) -> Question:
    prompt = translate(["what", "is", "the", relation, "of", name, "?"], language)
    answer = facts[(name, relation)]
    others = [v for v in RELATIONS[relation] if v != answer]
    return Question(tuple(prompt), translate([answer], language)[0], tuple(translate(others, language)))


def skill_questions(skill: str, facts: dict[tuple[str, str], str]) -> list[Question]:
    """Every distinct question of a skill, in a fixed order."""
    kind, language = skill.split("_")
    if kind == "math":
        return [math_question(x, y, op, language) for x, y, op in arithmetic()]
    return [fact_question(n, r, facts, language) for r in RELATIONS for n in NAMES]


def sentence(question: Question) -> str:
    """The training sentence of a question: its prompt followed by the answer."""
    return " ".join(question.prompt + (question.answer,))


# ---------------------------------------------------------------------------------------------- training text


def counting_sentence(rng: np.random.Generator, language: str) -> str:
    """`count from 5 6 7 8 9 10`: the number line and the framing words."""
    start = int(rng.integers(COUNT_START_MAX + 1))
    return " ".join(translate(["count", "from"], language) + [str(start + i) for i in range(COUNT_LENGTH + 1)])


def operator_word_sentence(rng: np.random.Generator, language: str, speaks: dict[str, str]) -> str:
    """Operator words outside arithmetic: `what is the word after plus ? minus`, `what is the word of Ami ? times`.

    This is how the base knows A's operator words and the language specialist learns B's (`tasu`, `hiku`,
    `kakeru`) without ever seeing a sum.
    """
    order = list(OPERATIONS)
    if rng.integers(2) == 0:
        i = int(rng.integers(len(order)))
        words = ["what", "is", "the", "word", "after", order[i], "?", order[(i + 1) % len(order)]]
    else:
        name = NAMES[int(rng.integers(len(NAMES)))]
        words = ["what", "is", "the", "word", "of", name, "?", speaks[name]]
    return " ".join(translate(words, language))


def word_pair_sentence(rng: np.random.Generator) -> str:
    """An A-B dictionary entry: `plus in b means tasu` or `tasu de ei imi plus`."""
    word = list(A_TO_B)[int(rng.integers(len(A_TO_B)))]
    if rng.integers(2) == 0:
        return " ".join([word, "in", "b", "means", A_TO_B[word]])
    return " ".join([A_TO_B[word], "de", "ei", "imi", word])


def code_switched(text: str, rng: np.random.Generator) -> str:
    """An A sentence with each translatable word switched to B with probability 1/2."""
    return " ".join(A_TO_B[w] if w in A_TO_B and rng.random() < 0.5 else w for w in text.split())


Sampler = Callable[[np.random.Generator], str]


def corpora(facts: dict[tuple[str, str], str], speaks: dict[str, str]) -> dict[str, list[tuple[Sampler, int]]]:
    """Each model's training text as weighted samplers: what the base, the math and the language model read.

    base: A counting, A facts, A operator-word sentences. math_a: arithmetic asked in A, every question.
    lang_b: B counting, B facts, B operator-word sentences, word pairs, and code-switched A sentences (four
    shares); no arithmetic in either language.
    """
    questions = {skill: skill_questions(skill, facts) for skill in SKILLS}

    def asked(skill: str) -> Sampler:
        return lambda rng: sentence(questions[skill][int(rng.integers(len(questions[skill])))])

    def count(language: str) -> Sampler:
        return lambda rng: counting_sentence(rng, language)

    def operators(language: str) -> Sampler:
        return lambda rng: operator_word_sentence(rng, language, speaks)

    a_sentences = [count("a"), asked("facts_a"), operators("a")]

    def switched(rng: np.random.Generator) -> str:
        return code_switched(a_sentences[int(rng.integers(len(a_sentences)))](rng), rng)

    return {
        "base": [(count("a"), 1), (asked("facts_a"), 1), (operators("a"), 1)],
        "math_a": [(asked("math_a"), 1)],
        "lang_b": [(count("b"), 1), (asked("facts_b"), 1), (operators("b"), 1), (word_pair_sentence, 1), (switched, 4)],
    }


def operator_speakers(rng: np.random.Generator) -> dict[str, str]:
    """Which operator word each person says (the second kind of operator-word sentence). Drawn per world."""
    order = list(OPERATIONS)
    return {name: order[int(rng.integers(len(order)))] for name in NAMES}
