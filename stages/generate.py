"""Generation stage: first trial -> verify -> k reflections per wrong answer -> second trials -> verify.

One call handles one shard of the generation pool with batched engine calls (every prompt of a step in one
call) and writes the shard's trajectories atomically. Prompts are rendered and stored before the engine sees
them, so a stored prompt can never contain text generated for it.
"""

from __future__ import annotations

import random
import time

from pydantic import BaseModel

from models.engines import Engine, load_engine
from models.prompts import FEEDBACK_WRONG, correction_messages, draw_instructions, reflection_messages
from reflectevo.config import EngineConfig, GenerateConfig
from reflectevo.schema import Attempt, ModelRef, Problem, Reflection, ShardManifest, Trajectory
from reflectevo.shards import content_key, finished, read_jsonl, write_shard
from stages.trial import attempt_batch, first_trials


FLIPPED = {"correct": "wrong", "wrong": "correct"}


def judged(attempts: list[Attempt], cfg: GenerateConfig, salt: str, second: bool = False) -> list[Attempt]:
    """The attempts with the verdicts generation acts on: the verifier's, under the shuffled control a seeded
    permutation of them (status and reason travel together; prompts and outputs stay), or with `verdicts:
    inverted` the second trials' verdicts flipped (an unparseable one stays unparseable)."""
    if cfg.verdicts == "inverted":
        return [a.model_copy(update={"status": FLIPPED.get(a.status, a.status), "reason": "inverted (fault)"})
                for a in attempts] if second else attempts
    if cfg.verdicts == "verifier" or len(attempts) < 2:
        return attempts
    order = list(range(len(attempts)))
    random.Random(f"{cfg.seed}:{salt}").shuffle(order)
    return [a.model_copy(update={"status": attempts[j].status, "reason": attempts[j].reason})
            for a, j in zip(attempts, order)]


def feedback_for(attempt: Attempt, cfg: GenerateConfig) -> str:
    return f"{FEEDBACK_WRONG} ({attempt.reason})" if cfg.rich_feedback and attempt.reason else FEEDBACK_WRONG


def run_round_steps(engine: Engine, problems: list[Problem], cfg: GenerateConfig, round_: int,
                    shard: int, given_firsts: list[Attempt] | None = None) -> tuple[list[Trajectory], dict[str, float]]:
    """The generation steps for a list of problems, without any file or Prefect around them.

    `given_firsts`: first trials another model made (`first_trial_model: base`); else the engine makes them."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    if given_firsts is None:
        given_firsts = first_trials(engine, problems, cfg.first_trial_sampling(), cfg.fewshot, cfg.rich_feedback)
    firsts = judged(given_firsts, cfg, f"{round_}:{shard}:first")
    timings["first_trial_s"] = time.perf_counter() - t

    wrong = [i for i, a in enumerate(firsts) if a.status != "correct"]
    jobs = [(i, iid) for i in wrong for iid in draw_instructions(cfg.seed, round_, problems[i].id, cfg.instructions)]
    refl_prompts = [
        engine.render(reflection_messages(problems[i], firsts[i].output, iid, feedback_for(firsts[i], cfg)))
        for i, iid in jobs
    ]
    t = time.perf_counter()
    refl_out = engine.generate(refl_prompts, cfg.reflection_sampling(cfg.reflections)) if jobs else []
    timings["reflection_s"] = time.perf_counter() - t

    flat = [(i, iid, prompt, s, c) for (i, iid), prompt, cs in zip(jobs, refl_prompts, refl_out)
            for s, c in enumerate(cs)]
    second_prompts = [engine.render(correction_messages(problems[i], firsts[i].output, c.text, cfg.fewshot))
                      for i, _, _, _, c in flat]
    t = time.perf_counter()
    seconds = judged(attempt_batch(engine, [problems[i] for i, *_ in flat], second_prompts, cfg.trial_sampling(),
                                   trial=2), cfg, f"{round_}:{shard}:second", second=True)
    timings["second_trial_s"] = time.perf_counter() - t

    reflections: dict[int, list[Reflection]] = {i: [] for i in wrong}
    for (i, iid, prompt, s, c), second in zip(flat, seconds):
        reflections[i].append(Reflection(instruction_id=iid, sample=s, prompt=prompt, text=c.text,
                                         output_tokens=c.tokens, second=second))
    trajectories = [
        Trajectory(round=round_, shard=shard, problem=p, first=firsts[i], reflections=reflections.get(i, []))
        for i, p in enumerate(problems)
    ]
    return trajectories, timings


def generation_key(problems_sha: str, model: ModelRef, engine: EngineConfig, cfg: GenerateConfig,
                   round_: int, shard: int) -> str:
    return content_key(stage="generate", round=round_, shard=shard, problems=problems_sha,
                       model=model.model_dump(), generate=cfg.model_dump(),
                       # Ray resources and the worker's interpreter decide where a shard runs, not what it holds.
                       engine=engine.model_dump(exclude={"num_gpus", "num_cpus", "vllm_python"}))


def count(trajectories: list[Trajectory]) -> dict[str, int]:
    refl = [r for t in trajectories for r in t.reflections]
    return {
        "problems": len(trajectories),
        "first_correct": sum(t.first.status == "correct" for t in trajectories),
        "first_unparseable": sum(t.first.status == "unparseable" for t in trajectories),
        "reflections": len(refl),
        "second_correct": sum(r.second.status == "correct" for r in refl),
        "output_tokens": sum(t.first.output_tokens for t in trajectories)
        + sum(r.output_tokens + r.second.output_tokens for r in refl),
    }


class ShardJob(BaseModel):
    """Everything one generation shard needs, including the key that decides whether it is already done."""

    problems_path: str
    out_path: str
    key: str
    model: ModelRef
    model_path: str
    engine: EngineConfig
    generate: GenerateConfig
    round: int
    shard: int


def generate_shard(job: ShardJob) -> ShardManifest:
    """Make (or find finished) one trajectory shard; returns its manifest."""
    info = finished(job.out_path, job.key)
    if info is None:
        problems = read_jsonl(job.problems_path, Problem)
        t = time.perf_counter()
        firsts = None
        if job.generate.first_trial_model == "base" and job.model.adapter is not None:
            g = job.generate  # one engine per process: the base model's trials come before the round's engine
            firsts = first_trials(load_engine(job.engine, job.model_path, None), problems, g.first_trial_sampling(),
                                  g.fewshot, g.rich_feedback)
        first_s = time.perf_counter() - t
        engine = load_engine(job.engine, job.model_path, job.model.adapter)
        trajectories, timings = run_round_steps(engine, problems, job.generate, job.round, job.shard, firsts)
        if firsts is not None:
            timings["first_trial_s"] = first_s
        timings["total_s"] = time.perf_counter() - t
        info = write_shard(job.out_path, trajectories, Trajectory, job.key,
                           {"counts": count(trajectories), "timings": timings})
    return ShardManifest(stage="generate", round=job.round, shard=job.shard, key=job.key, path=job.out_path,
                         rows=info.rows, sha256=info.sha256, model=job.model, **info.meta)
