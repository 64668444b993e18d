"""Evaluation on the held-out problems: trial 1, one reflection for each wrong answer, trial 2.

Acc@t1 is first-trial accuracy; Acc@t2 counts a problem correct if trial 1 was, or if the second trial after the
reflection was (reflection is gated by the verifier, as in the paper, so Acc@t2 >= Acc@t1).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from models.engines import Engine, SamplingConfig
from models.prompts import FEEDBACK_WRONG, INSTRUCTIONS, correction_messages, reasoning_messages, reflection_messages
from reflectevo.generate import attempt_batch
from reflectevo.schema import Problem
from reflectevo.shards import atomic_write_text


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instruction_id: str = Field(default="1-1-1", description="Pool instruction used for the test-time reflection.")
    trial_max_tokens: int = Field(default=192, ge=1)
    reflection_max_tokens: int = Field(default=128, ge=1)

    def model_post_init(self, _) -> None:
        if self.instruction_id not in INSTRUCTIONS:
            raise ValueError(f"evaluate.instruction_id {self.instruction_id!r} is not a pool key like '1-1-1'")


def run_eval(engine: Engine, problems: list[Problem], cfg: EvalConfig) -> tuple[dict[str, dict[str, float]], list[dict]]:
    """Per-task metrics ({task: {acc@t1, acc@t2, delta, n}}, plus 'all') and one sample row per problem."""
    trial = SamplingConfig(max_tokens=cfg.trial_max_tokens)
    firsts = attempt_batch(engine, problems, [engine.render(reasoning_messages(p)) for p in problems], trial, 1)
    wrong = [i for i, a in enumerate(firsts) if a.status != "correct"]
    refl_prompts = [engine.render(reflection_messages(problems[i], firsts[i].output, cfg.instruction_id,
                                                      FEEDBACK_WRONG)) for i in wrong]
    reflections = [c[0].text for c in engine.generate(refl_prompts, SamplingConfig(max_tokens=cfg.reflection_max_tokens))] if wrong else []
    second_prompts = [engine.render(correction_messages(problems[i], firsts[i].output, r))
                      for i, r in zip(wrong, reflections)]
    seconds = attempt_batch(engine, [problems[i] for i in wrong], second_prompts, trial, 2)
    second_of = dict(zip(wrong, seconds))
    reflection_of = dict(zip(wrong, reflections))

    samples, by_task = [], defaultdict(list)
    for i, (p, first) in enumerate(zip(problems, firsts)):
        t1 = first.status == "correct"
        t2 = t1 or (i in second_of and second_of[i].status == "correct")
        by_task[p.task].append((t1, t2))
        by_task["all"].append((t1, t2))
        samples.append({"task": p.task, "id": p.id, "target": p.answer, "first": first.model_dump(),
                        "reflection": reflection_of.get(i), "second": second_of[i].model_dump() if i in second_of else None,
                        "acc@t1": float(t1), "acc@t2": float(t2)})
    metrics = {}
    for task, rows in by_task.items():
        a1 = sum(r[0] for r in rows) / len(rows)
        a2 = sum(r[1] for r in rows) / len(rows)
        metrics[task] = {"acc@t1": a1, "acc@t2": a2, "delta": a2 - a1, "n": float(len(rows))}
    return metrics, samples


def write_eval(out_dir: str, metrics: dict, samples: list[dict], extra: dict) -> str:
    out = Path(out_dir)
    atomic_write_text(out / "samples.jsonl", "".join(json.dumps(s) + "\n" for s in samples))
    path = out / "metrics.json"
    atomic_write_text(path, json.dumps({"results": metrics, **extra}, indent=1))
    return str(path)
