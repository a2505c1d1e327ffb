"""The two synthetic languages of the tiny world and the sentences of each skill.

Language A is English-like; language B is a fixed word-for-word mapping of it (a stand-in for Japanese in the
Sakana experiment). Numbers and people's names are shared by both languages, as digits and proper nouns are in
real ones. Every skill is a question whose answer is a single word, so one format serves multiple choice
(log-likelihood over the choices) and exact-match generation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_NUMBER = 39
MAX_ADDEND = 19

FUNCTION_WORDS_B = {
    "what": "nani",
    "is": "wa",
    "plus": "tasu",
    "the": "ga",
    "color": "iro",
    "home": "ie",
    "of": "no",
    "count": "kazoe",
    "from": "kara",
}
COLORS_B = {
    "red": "aka",
    "blue": "ao",
    "green": "midori",
    "yellow": "kiiro",
    "black": "kuro",
    "white": "shiro",
}
PLACES_B = {
    "sea": "umi",
    "forest": "mori",
    "river": "kawa",
    "mountain": "yama",
    "desert": "sabaku",
    "cave": "dokutsu",
}
NAMES = (
    "Ami Ben Cai Dov Eli Fay Gus Hal Ivo Jun Kai Lev Mia Ned Oto Pia "
    "Rex Sol Tia Uma Vic Wes Xia Yul Zed Abe Bea Cid Dax Eve Fio Gil"
).split()
RELATIONS = {"color": COLORS_B, "home": PLACES_B}

# The skills a world measures. The first two are what the specialists learn; `math_b` is the target skill that
# neither was trained on; `facts_a` is what the base already knows.
SKILLS = ("math_a", "facts_b", "math_b", "facts_a")
SKILL_DESCRIPTIONS = {
    "math_a": "arithmetic asked and answered in language A (the math specialist's skill)",
    "facts_b": "facts about people asked and answered in language B (the language specialist's skill)",
    "math_b": "arithmetic asked in language B (the target skill: in no model's training data)",
    "facts_a": "facts about people asked in language A (the base model's knowledge)",
}


def translate(words: list[str], language: str) -> list[str]:
    """Map language-A words to `language`; words without a translation (numbers, names, '?') stay as they are."""
    if language == "a":
        return list(words)
    table = {**FUNCTION_WORDS_B, **COLORS_B, **PLACES_B}
    return [table.get(w, w) for w in words]


def vocabulary() -> list[str]:
    """Every word either language can produce, in a fixed order (the tokenizer's ids follow it)."""
    words_a = list(FUNCTION_WORDS_B) + list(COLORS_B) + list(PLACES_B)
    words_b = list(FUNCTION_WORDS_B.values()) + list(COLORS_B.values()) + list(PLACES_B.values())
    numbers = [str(n) for n in range(MAX_NUMBER + 1)]
    return words_a + words_b + numbers + list(NAMES) + ["?"]


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


def math_question(x: int, y: int, language: str) -> Question:
    prompt = translate(["what", "is", str(x), "plus", str(y), "?"], language)
    total = x + y
    near = [total + d for d in (-3, -2, -1, 1, 2, 3) if 0 <= total + d <= MAX_NUMBER]
    return Question(tuple(prompt), str(total), tuple(str(n) for n in near))


def fact_question(name: str, relation: str, facts: dict[tuple[str, str], str], language: str) -> Question:
    prompt = translate(["what", "is", "the", relation, "of", name, "?"], language)
    answer = facts[(name, relation)]
    others = [v for v in RELATIONS[relation] if v != answer]
    return Question(
        tuple(prompt), translate([answer], language)[0], tuple(translate(others, language))
    )


def skill_questions(skill: str, facts: dict[tuple[str, str], str]) -> list[Question]:
    """Every distinct question of a skill, in a fixed order."""
    kind, language = skill.split("_")
    if kind == "math":
        return [
            math_question(x, y, language)
            for x in range(MAX_ADDEND + 1)
            for y in range(MAX_ADDEND + 1)
        ]
    return [fact_question(n, r, facts, language) for r in RELATIONS for n in NAMES]


def sentence(question: Question) -> str:
    """The training sentence of a question: its prompt followed by the answer."""
    return " ".join(question.prompt + (question.answer,))


def counting_sentence(rng: np.random.Generator, language: str, length: int = 5) -> str:
    """`count from 5 6 7 8 9 10`: teaches the base both languages' framing words and the number line."""
    start = int(rng.integers(MAX_NUMBER - length + 1))
    words = translate(["count", "from"], language) + [str(start + i) for i in range(length + 1)]
    return " ".join(words)
