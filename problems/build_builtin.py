"""Generate the built-in sample sets `data/choice.jsonl` and `data/math.jsonl`.

Why they exist: a round must run offline (demo, CI, tests) without downloading a benchmark, and the sets must
show a spread of difficulty for a 135M model, so that some first trials fail and reflection has something to fix.
Every problem is written here from templates, not copied from any dataset; its gold answer is computed by
construction (exact `Fraction` arithmetic) and checked by an assertion. A fixed seed makes the output
deterministic, so `python -m problems.build_builtin` rewrites the committed files byte for byte.

Problem i uses template i % 8, so any prefix of a set mixes all templates.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
from fractions import Fraction
from pathlib import Path
from typing import Callable

from reflectevo.schema import OPTION_LETTERS, Problem

SEED = 20240517
N_PER_SET = 64
LETTERS = OPTION_LETTERS[:4]  # four options
DATA_DIR = Path(__file__).parent / "data"


# ---------------------------------------------------------------------------------------------------------------
# number formatting shared by both sets


def num(q: Fraction | int) -> str:
    """Exact decimal text of a number whose denominator divides a power of ten ('350', '2.5', '-0.25')."""
    q = Fraction(q)
    if q.denominator == 1:
        return str(q.numerator)
    for digits in range(1, 7):
        scaled = q * 10**digits
        if scaled.denominator == 1:
            text = f"{abs(scaled.numerator):0{digits + 1}d}"
            text = f"{'-' if q < 0 else ''}{text[:-digits]}.{text[-digits:]}".rstrip("0")
            assert Fraction(text) == q
            return text
    raise AssertionError(f"{q} has no short exact decimal")


def frac(q: Fraction) -> str:
    """LaTeX of a rational in lowest terms: '3', '-7', '\\frac{3}{4}', '-\\frac{3}{2}'."""
    if q.denominator == 1:
        return str(q.numerator)
    return f"{'-' if q < 0 else ''}\\frac{{{abs(q.numerator)}}}{{{q.denominator}}}"


def value_of(answer: str) -> Fraction:
    """Read back what `num`/`frac` wrote, so the assertion checks the text, not just the arithmetic."""
    m = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}", answer)
    if m:
        return Fraction(int(m[2]), int(m[3])) * (-1 if m[1] else 1)
    return Fraction(answer)


def sqrt_latex(n: int) -> str:
    """Simplified LaTeX of sqrt(n): '5', '\\sqrt{13}', '2\\sqrt{5}'."""
    k = max(k for k in range(1, math.isqrt(n) + 1) if n % (k * k) == 0)
    m = n // (k * k)
    assert k * k * m == n
    if m == 1:
        return str(k)
    return f"{k if k > 1 else ''}\\sqrt{{{m}}}"


# ---------------------------------------------------------------------------------------------------------------
# multiple choice: each template returns (question, correct option, three wrong options)

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
NAMES = ["Ann", "Bob", "Cy", "Dee", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jen", "Kai", "Lia", "Max", "Nia", "Oto", "Pam"]
NONSENSE = ["wug", "zorp", "fep", "blicket", "mip", "toma", "glorp", "snib", "kiv", "vop", "trel", "plonk"]
WORDS = ["banana", "strawberry", "mississippi", "committee", "balloon", "bookkeeper", "engineering", "possession",
         "assessment", "parallel", "hippopotamus", "referee", "coconut", "cinnamon", "success", "tomorrow"]


def c_largest(rng: random.Random, k: int) -> tuple[str, str, list[str]]:
    def expression() -> tuple[str, int]:
        form = rng.randrange(5)
        a, b = rng.randint(20, 60), rng.randint(5, 12)
        if form == 0:
            return f"{b - 2} × {b}", (b - 2) * b
        if form == 1:
            return f"{a} + {a - b}", 2 * a - b
        if form == 2:
            return f"{a + 60} - {a - b}", 60 + b
        if form == 3:
            return f"{b} squared", b * b
        return f"{a * b} ÷ {b}", a

    exprs: dict[int, str] = {}  # value -> text; distinct values make the extreme unique
    while len(exprs) < 4:
        text, value = expression()
        if value > 0 and value not in exprs:
            exprs[value] = text
    best = max(exprs) if k % 2 == 0 else min(exprs)
    assert sum(v == best for v in exprs) == 1
    question = f"Which of the following has the {'largest' if k % 2 == 0 else 'smallest'} value?"
    return question, exprs[best], [t for v, t in exprs.items() if v != best]


def c_units(rng: random.Random, k: int) -> tuple[str, str, list[str]]:
    big, small, factor, wrong = rng.choice([
        ("metres", "centimetres", 100, 1000), ("kilometres", "metres", 1000, 100), ("hours", "minutes", 60, 100),
        ("minutes", "seconds", 60, 100), ("kilograms", "grams", 1000, 100), ("days", "hours", 24, 60),
    ])
    amount = Fraction(rng.choice([3, 5, 7, 9, 15, 25]), rng.choice([1, 2, 4]))
    if factor % amount.denominator:
        amount = Fraction(amount.numerator)
    if k % 2 == 0:  # big -> small
        question, v, bad = f"How many {small} are there in {num(amount)} {big}?", amount * factor, amount * wrong
    else:  # small -> big
        question, v, bad = f"How many {big} are {num(amount * factor)} {small}?", amount, amount * factor / wrong
    pool = [bad, v * 10, v / 10, v * 100, v / 100]
    wrongs = list(dict.fromkeys(num(x) for x in pool if x != v))[:3]
    return question, num(v), wrongs


def c_ordering(rng: random.Random, k: int) -> tuple[str, str, list[str]]:
    more, less, top, bottom = [
        ("taller", "shorter", "tallest", "shortest"), ("older", "younger", "oldest", "youngest"),
        ("heavier", "lighter", "heaviest", "lightest"), ("faster", "slower", "fastest", "slowest"),
    ][k % 4]
    people = rng.sample(NAMES, 4)  # people[0] has the most of the attribute, people[3] the least
    facts = [f"{a} is {more} than {b}." if rng.random() < 0.5 else f"{b} is {less} than {a}."
             for a, b in zip(people, people[1:])]
    rng.shuffle(facts)
    asked = [(0, f"the {top}"), (3, f"the {bottom}"), (1, f"the second {top}"), (2, f"the second {bottom}")]
    index, phrase = rng.choice(asked)
    answer = people[index]
    return f"{' '.join(facts)} Who is {phrase}?", answer, [p for p in people if p != answer]


def c_syllogism(rng: random.Random, k: int) -> tuple[str, str, list[str]]:
    a, b, c = rng.sample(NONSENSE, 3)
    who = rng.choice(NAMES)
    variant = k % 3
    if variant == 0:
        facts, answer = f"All {a}s are {b}s. {who} is a {a}.", f"{who} is a {b}."
        wrongs = [f"{who} is not a {b}.", f"All {b}s are {a}s.", f"No {a}s are {b}s.", f"{who} is not a {a}."]
    elif variant == 1:
        facts, answer = f"All {a}s are {b}s. All {b}s are {c}s. {who} is a {a}.", f"{who} is a {c}."
        wrongs = [f"{who} is not a {b}.", f"All {c}s are {a}s.", f"{who} is not a {c}.", f"All {b}s are {a}s."]
    else:
        facts, answer = f"No {a}s are {b}s. {who} is a {a}.", f"{who} is not a {b}."
        wrongs = [f"{who} is a {b}.", f"{who} is not a {a}.", f"Some {a}s are {b}s."]
    return f"{facts} Which statement must be true?", answer, rng.sample(wrongs, 3)


def c_weekday(rng: random.Random, k: int) -> tuple[str, str, list[str]]:
    today, n = rng.randrange(7), rng.choice([d for d in range(3, 100) if d % 7])
    if k % 2 == 0:
        question, target = f"Today is {DAYS[today]}. What day of the week will it be {n} days from now?", today + n
    else:
        question, target = f"Today is {DAYS[today]}. What day of the week was it {n} days ago?", today - n
    answer = DAYS[target % 7]
    near = [DAYS[(target + 1) % 7], DAYS[(target - 1) % 7], DAYS[today], DAYS[(target + 2) % 7], DAYS[(target - 2) % 7]]
    return question, answer, [d for d in dict.fromkeys(near) if d != answer][:3]


def c_counting(rng: random.Random, k: int) -> tuple[str, str, list[str]]:
    word = WORDS[k * 2 + rng.randrange(2)]  # each problem draws from its own pair, so no word repeats
    letter = max(sorted(set(word)), key=word.count) if k % 2 == 0 else rng.choice(sorted(set(word)))
    n = word.count(letter)
    wrongs = [n + 1, n + 2, n - 1 if n > 1 else n + 3]
    return f'How many times does the letter "{letter}" appear in the word "{word}"?', str(n), [str(w) for w in wrongs]


def is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, math.isqrt(n) + 1))


def c_odd_one_out(rng: random.Random, k: int) -> tuple[str, str, list[str]]:
    primes = [n for n in range(11, 100) if is_prime(n)]
    odd_composites = [n for n in range(21, 100, 2) if not is_prime(n) and n % 5]  # look prime at a glance
    variant = k % 4
    if variant == 0:
        question, answer, wrongs = "Which of these numbers is prime?", rng.choice(primes), rng.sample(odd_composites, 3)
    elif variant == 1:
        question, answer = "Which of these numbers is not prime?", rng.choice(odd_composites)
        wrongs = rng.sample(primes, 3)
    elif variant == 2:
        evens = rng.sample(range(102, 400, 2), 3)
        question, answer, wrongs = "Which of these numbers is odd?", rng.randrange(101, 400, 2), evens
    else:
        question, answer = "Which of these numbers is divisible by 3?", 3 * rng.randint(34, 133)
        wrongs = rng.sample([n for n in range(100, 400) if n % 3], 3)
    check = {0: is_prime, 1: lambda n: not is_prime(n), 2: lambda n: n % 2 == 1, 3: lambda n: n % 3 == 0}[variant]
    assert check(answer) and not any(check(w) for w in wrongs)
    return question, str(answer), [str(w) for w in wrongs]


def c_clock(rng: random.Random, k: int) -> tuple[str, str, list[str]]:
    start = rng.randrange(6 * 60, 22 * 60, 5)
    length = rng.randrange(35, 200, 5)
    end = start + length

    def hhmm(minutes: int) -> str:
        return f"{minutes // 60 % 24:02d}:{minutes % 60:02d}"

    hours, minutes = divmod(length, 60)
    parts = [f"{hours} hour" + ("s" if hours > 1 else "")] if hours else []
    parts += [f"{minutes} minutes"] if minutes else []
    duration = " and ".join(parts)
    event = ["A film", "A train journey", "A football match", "A concert"][k % 4]
    question = f"{event} starts at {hhmm(start)} and lasts {duration}. At what time (24-hour clock) does it end?"
    return question, hhmm(end), [hhmm(end + d) for d in rng.sample([60, -60, 10, -10], 3)]


CHOICE_TEMPLATES = [c_largest, c_units, c_ordering, c_syllogism, c_weekday, c_counting, c_odd_one_out, c_clock]


def build_choice() -> list[Problem]:
    rng = random.Random(SEED)
    golds = list(LETTERS) * (N_PER_SET // len(LETTERS))
    rng.shuffle(golds)
    problems = []
    for i, gold in enumerate(golds):
        template = CHOICE_TEMPLATES[i % len(CHOICE_TEMPLATES)]
        question, answer, wrongs = template(rng, i // len(CHOICE_TEMPLATES))
        rng.shuffle(wrongs)
        options = wrongs[:3]
        options.insert(LETTERS.index(gold), answer)
        assert len(set(options)) == 4 and options.count(answer) == 1, (template.__name__, options)
        problems.append(Problem(id=f"choice-{i:03d}", task="choice", kind="choice", question=question, answer=gold,
                                choices=options, source="builtin:choice"))
    return problems


# ---------------------------------------------------------------------------------------------------------------
# math: each template returns (question, answer text, exact value or None for surds)


def m_word(rng: random.Random, k: int) -> tuple[str, str, Fraction | None]:
    variant = k % 4
    if variant == 0:
        n1, p1 = rng.randint(2, 5), Fraction(rng.randint(4, 16), 4)
        n2, p2 = rng.randint(2, 4), Fraction(rng.randint(2, 10), 4)
        total = n1 * p1 + n2 * p2
        bill = next(b for b in (10, 20, 50, 100) if b > total)
        change = bill - total
        assert change + n1 * p1 + n2 * p2 == bill
        q = (f"Maya buys {n1} notebooks at ${float(p1):.2f} each and {n2} pens at ${float(p2):.2f} each. "
             f"She pays with a ${bill} bill. How much change, in dollars, does she get?")
        return q, num(change), change
    if variant == 1:
        d, bags = rng.randint(4, 8), rng.randint(3, 9)
        trays, per_tray = rng.randint(3, 6), rng.randint(10, 14)
        sold = trays * per_tray - d * bags
        assert sold > 0 and (trays * per_tray - sold) % d == 0
        q = (f"A baker makes {trays} trays of {per_tray} cookies and sells {sold} cookies. He packs the rest into "
             f"bags of {d}. How many bags does he fill?")
        return q, str(bags), Fraction(bags)
    if variant == 2:
        t, up, down = rng.randint(-8, 6), rng.randint(3, 12), rng.randint(10, 25)
        end = t + up - down
        q = (f"At 6 am the temperature is {t} degrees Celsius. It rises by {up} degrees by noon and then falls by "
             f"{down} degrees by midnight. What is the temperature at midnight, in degrees Celsius?")
        return q, str(end), Fraction(end)
    v, w = rng.randint(10, 20), rng.randint(8, 16)
    t, s = Fraction(rng.randint(2, 6), 2), Fraction(rng.randint(1, 4), 2)
    dist = v * t + w * s
    q = (f"A cyclist rides at {v} km per hour for {num(t)} hours, then at {w} km per hour for {num(s)} hours. "
         f"How many kilometres does she ride in total?")
    return q, num(dist), dist


def m_linear(rng: random.Random, k: int) -> tuple[str, str, Fraction | None]:
    variant = k % 3
    if variant == 0:
        x, a, b = rng.randint(-9, 12), rng.randint(2, 9), rng.choice([n for n in range(-20, 21) if n])
        c = a * x + b
        q, check = f"Solve for x: {a}x {'+' if b >= 0 else '-'} {abs(b)} = {c}.", lambda x: a * x + b == c
    elif variant == 1:
        a, c = rng.sample(range(2, 10), 2)
        b, d = rng.sample([n for n in range(-15, 16) if n], 2)
        x = Fraction(d - b, a - c)
        q = f"Solve for x: {a}x {'+' if b >= 0 else '-'} {abs(b)} = {c}x {'+' if d >= 0 else '-'} {abs(d)}."
        check = lambda x: a * x + b == c * x + d  # noqa: E731
    else:
        a, b = rng.randint(2, 6), rng.randint(1, 12)
        x = a * rng.choice([n for n in range(-6, 11) if n])
        c = x // a + b
        q, check = f"Solve for x: x/{a} + {b} = {c}.", lambda x: Fraction(x, a) + b == c
    x = Fraction(x)
    assert check(x)
    return q, frac(x), x


def m_percent(rng: random.Random, k: int) -> tuple[str, str, Fraction | None]:
    variant = k % 4
    p = rng.choice([5, 10, 12, 15, 20, 25, 30, 40, 60, 75])
    if variant == 0:
        n = rng.choice(range(40, 400, 20))
        v = Fraction(p, 100) * n
        return f"What is {p}% of {n}?", num(v), v
    if variant == 1:
        price = rng.choice(range(20, 200, 4))
        v = price * (1 - Fraction(p, 100))
        return f"A jacket costs ${price}. It is discounted by {p}%. What is the sale price in dollars?", num(v), v
    if variant == 2:
        original = rng.choice(range(20, 400, 20))
        new = original * (1 + Fraction(p, 100))
        assert new / (1 + Fraction(p, 100)) == original
        q = f"After a {p}% increase, a price is ${num(new)}. What was the price before the increase, in dollars?"
        return q, str(original), Fraction(original)
    whole = rng.choice([20, 40, 50, 80, 120, 200, 250])
    part = Fraction(p, 100) * whole
    v = 100 * part / whole
    return f"What percentage of {whole} is {num(part)}? Answer with the number only.", num(v), v


def m_fractions(rng: random.Random, k: int) -> tuple[str, str, Fraction | None]:
    op = ["+", "-", "×", "+"][k % 4]
    while True:
        x = Fraction(rng.randint(1, 7), rng.randint(2, 9))
        y = Fraction(rng.randint(1, 7), rng.randint(2, 9))
        if x.denominator == 1 or y.denominator == 1:
            continue
        v = {"+": x + y, "-": x - y, "×": x * y}[op]
        if v.denominator != 1 and v != 0:
            break
    q = f"Compute {x} {op} {y}. Give the answer as a fraction in lowest terms."
    return q, frac(v), v


def m_average(rng: random.Random, k: int) -> tuple[str, str, Fraction | None]:
    if k % 2 == 0:
        xs = [rng.randint(2, 40) for _ in range(rng.choice([4, 5]))]
        v = Fraction(sum(xs), len(xs))
        return f"What is the mean (average) of {', '.join(map(str, xs[:-1]))} and {xs[-1]}?", num(v), v
    n, mean = rng.choice([4, 5]), rng.randint(10, 30)
    while True:
        known = [rng.randint(mean - 8, mean + 8) for _ in range(n - 1)]
        missing = n * mean - sum(known)
        if missing > 0:
            break
    assert Fraction(sum(known) + missing, n) == mean
    q = (f"The average of {n} numbers is {mean}. {n - 1} of them are {', '.join(map(str, known[:-1]))} and "
         f"{known[-1]}. What is the remaining number?")
    return q, str(missing), Fraction(missing)


def m_geometry(rng: random.Random, k: int) -> tuple[str, str, Fraction | None]:
    variant = k % 4
    length, width = rng.randint(5, 15), rng.randint(2, 9)
    if variant == 0:
        perimeter = 2 * (length + width)
        q = f"A rectangle has perimeter {perimeter} cm and length {length} cm. What is its area in square cm?"
        return q, str(length * width), Fraction(length * width)
    if variant == 1:
        v = Fraction(length * width, 2)
        q = f"A triangle has base {length} cm and height {width} cm. What is its area in square cm?"
        return q, num(v), v
    if variant == 2:
        side = rng.randint(3, 12)
        q = f"A square has area {side * side} square metres. What is its perimeter in metres?"
        return q, str(4 * side), Fraction(4 * side)
    a, b = rng.sample(range(1, 9), 2)
    q = f"A right triangle has legs of length {a} and {b}. What is the length of its hypotenuse?"
    return q, sqrt_latex(a * a + b * b), None


def m_sequence(rng: random.Random, k: int) -> tuple[str, str, Fraction | None]:
    variant = k % 4
    if variant == 3:
        n, start, step = rng.randint(5, 12), rng.randint(1, 9), rng.randint(2, 5)
        total = sum(start + step * i for i in range(n))
        assert total == n * (2 * start + (n - 1) * step) // 2
        q = f"What is the sum of the first {n} terms of the sequence {start}, {start + step}, {start + 2 * step}, ...?"
        return q, str(total), Fraction(total)
    if variant == 2:  # geometric
        start, ratio = rng.randint(1, 5), rng.choice([2, 3, -2])
        terms = [start * ratio**i for i in range(5)]
    else:  # arithmetic, possibly decreasing
        start, step = rng.randint(-10, 30), rng.choice([-7, -5, -4, -3, 3, 4, 6, 9])
        terms = [start + step * i for i in range(5)]
    shown = ", ".join(map(str, terms[:4]))
    if variant == 1:
        n = rng.randint(10, 30)
        v = start + (n - 1) * step
        assert terms[4] == start + 4 * step
        direction = "up" if step > 0 else "down"
        q = f"The sequence {shown}, ... goes {direction} by the same amount each time. What is term number {n}?"
        return q, str(v), Fraction(v)
    return f"What is the next number in the sequence {shown}, ...?", str(terms[4]), Fraction(terms[4])


def m_remainder(rng: random.Random, k: int) -> tuple[str, str, Fraction | None]:
    variant = k % 4
    d = rng.randint(3, 13)
    if variant == 0:
        n = rng.randint(50, 999)
        q, r = f"What is the remainder when {n} is divided by {d}?", n % d
    elif variant == 1:
        a, b = rng.randint(12, 60), rng.randint(12, 60)
        q, r = f"What is the remainder when {a} × {b} is divided by {d}?", (a * b) % d
    elif variant == 2:
        e = rng.randint(5, 12)
        q, r = f"What is the remainder when 2^{e} is divided by {d}?", pow(2, e, d)
    else:
        n = rng.randint(25, 120)
        q, r = f"{n} students are split into teams of {d}. How many students are left over?", n % d
    assert 0 <= r < d
    return q, str(r), Fraction(r)


MATH_TEMPLATES = [m_word, m_linear, m_percent, m_fractions, m_average, m_geometry, m_sequence, m_remainder]


def build_math() -> list[Problem]:
    rng = random.Random(SEED + 1)  # its own stream: editing one set never reshuffles the other
    problems = []
    for i in range(N_PER_SET):
        template = MATH_TEMPLATES[i % len(MATH_TEMPLATES)]
        question, answer, value = template(rng, i // len(MATH_TEMPLATES))
        assert value is None or value_of(answer) == value, (template.__name__, answer, value)
        problems.append(Problem(id=f"math-{i:03d}", task="math", kind="math", question=question, answer=answer,
                                source="builtin:math"))
    return problems


# ---------------------------------------------------------------------------------------------------------------

BUILDERS: dict[str, Callable[[], list[Problem]]] = {"choice": build_choice, "math": build_math}


def write(problems: list[Problem], path: Path) -> None:
    assert len({p.id for p in problems}) == len(problems)
    lines = [json.dumps(Problem.model_validate(p.model_dump()).model_dump(), ensure_ascii=False) for p in problems]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=DATA_DIR, help="where to write the .jsonl files")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for task, build in BUILDERS.items():
        problems = build()
        write(problems, args.out_dir / f"{task}.jsonl")
        print(f"{task}: {len(problems)} problems -> {args.out_dir / f'{task}.jsonl'}")


if __name__ == "__main__":
    main()
