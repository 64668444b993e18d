"""A learnable world: procedurally generated multiple-choice problems whose rule a small model can learn.

Why it exists: ReflectEvo's claim is that the loop makes a model better. On a real benchmark a 135M model fixes
too little to show it on a laptop, and a test model pretrained to favour some letters proves only the plumbing.
This world is the loop's positive control: problems with a hidden rule, a model that knows the prompt formats but
not the rule (`models/tiny.py`), and the verifier's verdict as the only teacher.

Two kinds of rule. `paired` (the positive control's default): each question names one option, "Which option is
paired with option (C)?", and the answer is its partner under a permutation of A-D drawn from the world's seed that
moves every letter (so repeating the named letter is always wrong); the options are random numbers that say
nothing. The untrained model is at chance, and it must learn the permutation from the verifier's verdicts alone.
The format model reads letters in parentheses (its reflections name the failed option that way), so the rule has a
path a three-layer model can learn from a round's D+ whatever its float kernels round: learning it measures the
loop, not a lucky data order. The value rules (`even`, `largest`, ...) need the model to bind each number to its
letter and learn a property of 20-90 random number embeddings; at this scale that is a lottery that one CPU's
rounding decides (docs/training.md), so they are for studying the model, not for gating.

A world is a plain problems file in the project's own format (`kind: choice`), so it runs through the ordinary
problem source, prompts, stages and verifier, and any other choice-kind file can take its place.

    python -m problems.world --rule paired --count 1200 --out world.jsonl
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Callable

from reflectevo.schema import OPTION_LETTERS, Problem

LETTERS = OPTION_LETTERS[:4]  # four options

# rule name -> (question text, pick: the index of the correct option among distinct values)
RULES: dict[str, tuple[str, Callable[[list[int]], int]]] = {
    "largest": ("Which option holds the largest number?", lambda v: v.index(max(v))),
    "smallest": ("Which option holds the smallest number?", lambda v: v.index(min(v))),
    "closest-to-50": ("Which option holds the number closest to 50?",
                      lambda v: min(range(len(v)), key=lambda i: abs(v[i] - 50))),
    "even": ("Which option holds the even number?", lambda v: next(i for i, x in enumerate(v) if x % 2 == 0)),
}


def pairing(seed: int) -> dict[str, str]:
    """The `paired` rule of world `seed`: each letter's partner, a seeded permutation that moves every letter."""
    rng = random.Random(f"world:paired:{seed}")
    while True:
        partners = rng.sample(LETTERS, len(LETTERS))
        if all(a != b for a, b in zip(LETTERS, partners)):
            return dict(zip(LETTERS, partners))


def world_problems(rule: str = "paired", count: int = 1200, seed: int = 0, low: int = 10,
                   high: int = 99) -> list[Problem]:
    """`count` distinct problems of `rule`, each with four distinct numbers in [low, high]; the same for the same seed.

    The correct letter is uniform over A-D (the values are shuffled; the named letter is uniform), so a model that
    ignores the rule scores 0.25. Draws without exactly one answer (a tie in distance for 'closest-to-50', not exactly one
    even number for 'even') and repeats of an earlier problem's question and options are skipped, so no held-out
    problem is a copy of a pool one.
    """
    if rule not in RULES and rule != "paired":
        raise ValueError(f"unknown world rule {rule!r}; known: {sorted([*RULES, 'paired'])}")
    partner = pairing(seed)
    rng = random.Random(f"world:{rule}:{seed}")
    problems, seen = [], set()
    while len(problems) < count:
        values = rng.sample(range(low, high + 1), len(LETTERS))
        if rule == "paired":
            named = rng.choice(LETTERS)
            question, answer = f"Which option is paired with option ({named})?", partner[named]
        elif _tied(rule, values) or (rule == "even" and sum(x % 2 == 0 for x in values) != 1):
            continue
        else:
            question, pick = RULES[rule]
            answer = LETTERS[pick(values)]
        if (question, *values) in seen:
            continue
        seen.add((question, *values))
        problems.append(Problem(id=f"{rule}-{len(problems):05d}", task=f"world-{rule}", kind="choice",
                                question=question, answer=answer, choices=[str(v) for v in values],
                                source=f"problems.world rule={rule} seed={seed}"))
    return problems


def _tied(rule: str, values: list[int]) -> bool:
    if rule != "closest-to-50":
        return False
    distances = sorted(abs(v - 50) for v in values)
    return distances[0] == distances[1]


def write_world(path: str | Path, rule: str = "paired", count: int = 1200, seed: int = 0, low: int = 10,
                high: int = 99) -> Path:
    """Write a world as a JSONL problems file (one `Problem` per line)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    problems = world_problems(rule, count, seed, low, high)
    out.write_text("".join(p.model_dump_json() + "\n" for p in problems), encoding="utf-8")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rule", default="paired", choices=sorted([*RULES, "paired"]))
    parser.add_argument("--count", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--low", type=int, default=10, help="the smallest option value")
    parser.add_argument("--high", type=int, default=99, help="the largest option value")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    print(write_world(args.out, args.rule, args.count, args.seed, args.low, args.high))


if __name__ == "__main__":
    main()
