"""One trial, the step generation and evaluation share: render, generate, extract `Finish[...]`, verify.

Both stages make their first trials with `first_trials` and every later trial with `attempt_batch`, so a trial in
a training shard and a trial in an evaluation are the same prompt, the same sampling and the same verdict.
"""

from __future__ import annotations

from models.engines import Engine
from models.prompts import final_answer_text, reasoning_messages
from reflectevo.config import SamplingConfig
from reflectevo.schema import Attempt, Problem
from verifiers import verify_many


def attempt_batch(engine: Engine, problems: list[Problem], prompts: list[str], sampling: SamplingConfig,
                  trial: int, rich_feedback: bool = False) -> list[Attempt]:
    """One greedy trial for each (problem, prompt): generate, extract `Finish[...]`, verify, all batched.

    `rich_feedback`: the verdicts' reasons are the verifiers' detailed ones (a failing assert and its values)."""
    outputs = [c[0] for c in engine.generate(prompts, sampling)] if prompts else []
    answers, texts = zip(*(final_answer_text(o.text) for o in outputs)) if outputs else ((), ())
    verdicts = verify_many(list(zip(problems, texts)), rich_feedback=rich_feedback)
    return [
        Attempt(trial=trial, prompt=pr, output=o.text, answer=a if a is not None else v.parsed_answer,
                status=v.status, reason=v.reason, output_tokens=o.tokens)
        for pr, o, a, v in zip(prompts, outputs, answers, verdicts)
    ]


def first_trials(engine: Engine, problems: list[Problem], sampling: SamplingConfig, fewshot: int,
                 rich_feedback: bool = False) -> list[Attempt]:
    """Trial 1 of every problem, asked with the reasoning prompt and `fewshot` worked examples."""
    return attempt_batch(engine, problems, [engine.render(reasoning_messages(p, fewshot)) for p in problems],
                         sampling, trial=1, rich_feedback=rich_feedback)
