"""Short arithmetic word problems of the `math` kind, generated and seeded: a family a 135M model can partly do.

One operation each (add, subtract, multiply, share equally), small whole numbers, answers checked by the math
verifier like any other math problem. Like problems/world.py, a family is a plain problems file, so it runs
through the ordinary source, prompts, stages and verifier.

    python -m problems.wordproblems --count 900 --seed 0 --out arith.jsonl
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from reflectevo.schema import Problem

NAMES = ("Tom", "Sara", "Ali", "Mia", "Ben", "Lena", "Omar", "Kim")
THINGS = ("apples", "pens", "books", "stamps", "marbles", "cards", "shells", "coins")

# (template, answer): a, b are whole numbers drawn per problem; c is a * b, so sharing divides exactly; d <= a.
TEMPLATES = (
    ("{n} has {a} {t} and gets {b} more. How many {t} does {n} have now?", lambda a, b, c, d: a + b),
    ("{n} has {c} {t} and gives away {b}. How many {t} are left?", lambda a, b, c, d: c - b),
    ("{n} buys {a} bags with {b} {t} in each bag. How many {t} is that in all?", lambda a, b, c, d: c),
    ("{n} shares {c} {t} equally among {a} friends. How many {t} does each friend get?", lambda a, b, c, d: b),
    ("A box holds {b} {t}. How many {t} are in {a} boxes?", lambda a, b, c, d: c),
    ("{n} had {a} {t}, found {b} and then lost {d}. How many {t} does {n} have?", lambda a, b, c, d: a + b - d),
)


def word_problems(count: int = 900, seed: int = 0, high: int = 12) -> list[Problem]:
    """`count` distinct problems with numbers from 2 to `high`; the same for the same seed."""
    rng = random.Random(f"wordproblems:{seed}")
    problems, seen = [], set()
    while len(problems) < count:
        template, formula = rng.choice(TEMPLATES)
        a, b = rng.randint(2, high), rng.randint(2, high)
        c, d = a * b, rng.randint(1, a)
        question = template.format(a=a, b=b, c=c, d=d, n=rng.choice(NAMES), t=rng.choice(THINGS))
        if question in seen:
            continue
        seen.add(question)
        answer = formula(a, b, c, d)
        problems.append(Problem(id=f"arith-{len(problems):05d}", task="arith", kind="math", question=question,
                                answer=str(answer), source=f"problems.wordproblems seed={seed}"))
    return problems


def write_word_problems(path: str | Path, count: int = 900, seed: int = 0, high: int = 12) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(p.model_dump_json() + "\n" for p in word_problems(count, seed, high)), encoding="utf-8")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=900)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--high", type=int, default=12, help="the largest number in a problem")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    print(write_word_problems(args.out, args.count, args.seed, args.high))


if __name__ == "__main__":
    main()
