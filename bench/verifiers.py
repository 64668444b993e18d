"""Verifier throughput: sandboxed MBPP programs and math answers per second, each against its naive baseline.

    OMP_NUM_THREADS=1 python bench/verifiers.py [--programs 200] [--workers 2] [--math-items 1000]

Prints one line per comparison:

    sandbox_programs_per_s=<a> naive_programs_per_s=<b> ratio=<a/b>
    verify_many_math_per_s=<a> plain_math_verify_per_s=<b> ratio=<a/b>

Programs are the shipped MBPP samples' reference solutions (all pass), cycled. The sandbox runs each in a fresh
bwrap sandbox with the two-process judge; the naive baseline writes code + asserts to a file and runs
`subprocess.run([sys.executable, file])` unsandboxed. Both use the same thread pool of `--workers`. Math answers
are the MATH samples' golds in several surface forms, through `verify_many` (worker processes, per-item
timeout) versus a plain loop over `math_verify.parse`/`verify` in this process. Warm-up runs are not timed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from problems import load_problems  # noqa: E402
from reflectevo.config import ProblemSource  # noqa: E402

SAMPLES = ROOT / "problems" / "data" / "samples"


def _rate(n: int, fn) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def bench_programs(n: int, workers: int) -> tuple[float, float]:
    from verifiers.sandbox import run_python

    rows = [json.loads(line) for line in (SAMPLES / "mbpp.jsonl").read_text().splitlines()]
    jobs = [rows[i % len(rows)] for i in range(n)]

    def sandboxed(row):
        result = run_python(row["code"], row["test_list"], row["test_setup_code"])
        assert result.status == "correct", result

    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, row in enumerate(rows):
            path = Path(tmp, f"prog{i}.py")
            path.write_text("\n".join([row["code"], row["test_setup_code"], *row["test_list"]]) + "\n")
            files.append(path)

        def naive(i):
            subprocess.run([sys.executable, str(files[i % len(files)])], check=True, timeout=10)

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(sandboxed, jobs[: 2 * workers]))  # warm-up
            list(pool.map(naive, range(2 * workers)))
            sandbox_rate = _rate(n, lambda: list(pool.map(sandboxed, jobs)))
            naive_rate = _rate(n, lambda: list(pool.map(naive, range(n))))
    return sandbox_rate, naive_rate


def bench_math(n: int) -> tuple[float, float]:
    import math_verify

    from verifiers import verify_many

    problems = load_problems(ProblemSource(task="math", format="hendrycks_math", path=str(SAMPLES / "hendrycks_math.jsonl")))
    forms = [lambda a: a, lambda a: f"\\boxed{{{a}}}", lambda a: f"The answer is ${a}$.", lambda a: "0.125"]
    items = [(p, forms[i % len(forms)](p.answer)) for i, p in enumerate(problems * (n // len(problems) + 1))][:n]
    config = [math_verify.LatexExtractionConfig(), math_verify.ExprExtractionConfig()]

    def plain():
        for problem, output in items:
            gold = math_verify.parse(f"${problem.answer}$", extraction_config=config)
            math_verify.verify(gold, math_verify.parse(output, extraction_config=config))

    verify_many(items[:50])  # warm-up: starts the worker pool
    pool_rate = _rate(n, lambda: verify_many(items))
    plain()
    return pool_rate, _rate(n, plain)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--programs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--math-items", type=int, default=1000)
    args = parser.parse_args()
    a, b = bench_programs(args.programs, args.workers)
    print(f"sandbox_programs_per_s={a:.1f} naive_programs_per_s={b:.1f} ratio={a / b:.2f}", flush=True)
    a, b = bench_math(args.math_items)
    print(f"verify_many_math_per_s={a:.1f} plain_math_verify_per_s={b:.1f} ratio={a / b:.2f}", flush=True)


if __name__ == "__main__":
    main()
