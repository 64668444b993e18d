"""Evaluation on the held-out problems: trial 1, then up to T turns of reflect -> retry on the still-wrong ones.

Acc@t1 is first-trial accuracy; Acc@t{k+1} counts a problem correct if any of its first k+1 trials was: reflection
is gated by the verifier, as in the paper, so accuracy never falls from one turn to the next. `delta` is the
paper's difference, Acc@t2 - Acc@t1. Two protocols for trial 1:

* `paper`: trial 1 from the base model, generated once per run and reused by every round (the paper reuses one
  stored base run), so Acc@t1 is the same in every round and the difference measures reflection alone;
* `evolution`: trial 1 from the round's model, so Acc@t1 also shows what training did to first answers.

Results are written in lm-evaluation-harness's shape, so its summarisers read them: `results_<timestamp>.json`
(per task `"acc@t1,none"`-style metrics with an alias, configs, versions, n-samples, config, git hash, date,
duration) and one `samples_<task>_<timestamp>.jsonl` per task.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import subprocess
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from models.engines import Engine, load_engine
from models.prompts import FEEDBACK_WRONG, correction_messages, reflection_messages
from reflectevo.config import EngineConfig, EvalConfig
from reflectevo.schema import Attempt, ModelRef, Problem
from reflectevo.shards import atomic_write_text, content_key, file_sha256, read_jsonl, write_jsonl
from stages.trial import attempt_batch, first_trials

TASK_VERSION = 1.0  # bump when prompts or scoring change what a task's numbers mean


def _trial_call(a: Attempt) -> dict:
    return {"role": "trial", "prompt": a.prompt, "text": a.output, "filtered": a.answer or "", "status": a.status}


def retry_turns(engine: Engine, problems: list[Problem], first: list[Attempt], cfg: EvalConfig, fewshot: int,
                reflect: bool) -> tuple[list[list[dict]], list[list[bool]]]:
    """T turns of (reflect ->) retry; per problem, its engine calls and whether its standing answer was correct
    after each trial. Oracle feedback retries only answers judged wrong (and says so); intrinsic retries all.

    Each turn is at most one batched reflection call and one batched trial call.
    """
    oracle = cfg.feedback == "oracle"
    latest = list(first)
    calls = [[_trial_call(a)] for a in latest]
    correct = [[a.status == "correct"] for a in latest]
    for turn in range(cfg.turns):
        todo = [i for i, a in enumerate(latest) if a.status != "correct" or not oracle]
        texts: list[str | None] = [None] * len(todo)
        if reflect and todo:
            prompts = [engine.render(reflection_messages(problems[i], latest[i].output, cfg.instruction_id,
                                                         FEEDBACK_WRONG if oracle else None)) for i in todo]
            texts = [c[0].text for c in engine.generate(prompts, cfg.reflection_sampling())]
            for i, prompt, text in zip(todo, prompts, texts):
                calls[i].append({"role": "reflection", "prompt": prompt, "text": text, "filtered": text})
        retry_prompts = [engine.render(correction_messages(problems[i], latest[i].output, text, fewshot, oracle))
                         for i, text in zip(todo, texts)]
        retries = attempt_batch(engine, [problems[i] for i in todo], retry_prompts, cfg.trial_sampling(), turn + 2)
        for i, attempt in zip(todo, retries):
            calls[i].append(_trial_call(attempt))
            latest[i] = attempt
        for i, a in enumerate(latest):
            correct[i].append(a.status == "correct")
    return calls, correct


def run_eval(engine: Engine, problems: list[Problem], cfg: EvalConfig, first: list[Attempt] | None = None,
             fewshot: int = 0) -> tuple[dict[str, dict[str, float]], list[dict]]:
    """Per-task metrics ({task: {metric, metric_stderr, .., n}}, plus 'all') and one lm-eval sample row per problem.

    `first`: trial 1 made elsewhere (the base model's, under the paper protocol); else the engine makes it. The
    no-reflection baseline retries from the same first trials with the same budget and gate.
    """
    first = list(first) if first is not None else first_trials(engine, problems, cfg.trial_sampling(), fewshot)
    calls, correct = retry_turns(engine, problems, first, cfg, fewshot, reflect=True)
    base_calls, base_correct = retry_turns(engine, problems, first, cfg, fewshot, reflect=False)

    samples, doc_ids = [], defaultdict(int)
    for p, history, ok, base_history, base_ok in zip(problems, calls, correct, base_calls, base_correct):
        doc = p.model_dump()
        values = {name: float(v) for name, v in zip(cfg.trial_names(), ok)}
        values.update({f"{name}_noreflect": float(v) for name, v in zip(cfg.trial_names()[1:], base_ok[1:])})
        values.update(delta=values["acc@t2"] - values["acc@t1"],
                      reflection_gain=values["acc@t2"] - values["acc@t2_noreflect"],
                      delta_i2c=float(not ok[0] and ok[1]), delta_c2i=float(ok[0] and not ok[1]))
        samples.append({
            "task": p.task, "doc_id": doc_ids[p.task], "doc": doc, "target": p.answer,
            "arguments": {f"gen_args_{k}": {"arg_0": c["prompt"], "arg_1": _gen_kwargs(cfg, c["role"])}
                          for k, c in enumerate(history)},
            "resps": [[c["text"]] for c in history], "filtered_resps": [c["filtered"] for c in history],
            "statuses": [c["status"] for c in history if c["role"] == "trial"],
            "noreflect_resps": [[c["text"]] for c in base_history[1:]],
            "doc_hash": _sha(json.dumps(doc, sort_keys=True)), "prompt_hash": _sha(history[0]["prompt"]),
            **values,
        })
        doc_ids[p.task] += 1
    return _metrics(samples, cfg), samples


def _gen_kwargs(cfg: EvalConfig, role: str) -> dict:
    s = cfg.trial_sampling() if role == "trial" else cfg.reflection_sampling()
    return {"role": role, "max_gen_toks": s.max_tokens, "temperature": s.temperature, "do_sample": s.temperature > 0}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def mean_stderr(values: list[float]) -> tuple[float, float | None]:
    """Mean and standard error of per-problem values (sample standard deviation / sqrt(n)).

    For 0/1 values this is lm-eval's sqrt(p(1-p)/(n-1)); for paired differences (delta, reflection_gain) it is
    the standard error of the difference. One value has no stderr: None (the results JSON says 'N/A', as lm-eval).
    """
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def _metrics(samples: list[dict], cfg: EvalConfig) -> dict[str, dict[str, float]]:
    groups = defaultdict(list)
    for s in samples:
        groups[s["task"]].append(s)
        groups["all"].append(s)
    metrics = {}
    for task, rows in groups.items():
        m: dict[str, float] = {"n": float(len(rows))}
        for name in cfg.metric_names():
            m[name], err = mean_stderr([r[name] for r in rows])
            if err is not None:
                m[f"{name}_stderr"] = err
        metrics[task] = m
    return metrics


def _result_row(name: str, m: dict[str, float], cfg: EvalConfig) -> dict:
    row: dict = {"alias": name}
    for metric in cfg.metric_names():
        row[f"{metric},none"] = m[metric]
        row[f"{metric}_stderr,none"] = m.get(f"{metric}_stderr", "N/A")
    return row


def git_hash() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def results_document(metrics: dict[str, dict[str, float]], cfg: EvalConfig, config: dict, seconds: float,
                     fewshot: int = 0) -> dict:
    """The lm-evaluation-harness results JSON; the aggregate over tasks is the group 'all'."""
    tasks = sorted(t for t in metrics if t != "all")
    metric_names = cfg.metric_names()
    doc = {
        "results": {t: _result_row(t, metrics[t], cfg) for t in [*tasks, "all"]},
        "groups": {"all": _result_row("all", metrics["all"], cfg)},
        "group_subtasks": {"all": tasks},
        "configs": {t: {"task": t, "output_type": "generate_until", "num_fewshot": fewshot,
                        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": m != "delta_c2i"}
                                        for m in metric_names],
                        "generation_kwargs": {role: _gen_kwargs(cfg, role) for role in ("trial", "reflection")},
                        "metadata": {"version": TASK_VERSION, **cfg.model_dump()}} for t in tasks},
        "versions": {**{t: TASK_VERSION for t in tasks}, "all": "N/A"},
        "n-shot": {t: fewshot for t in tasks},
        "higher_is_better": {t: {m: m != "delta_c2i" for m in metric_names} for t in tasks},
        "n-samples": {t: {"original": int(metrics[t]["n"]), "effective": int(metrics[t]["n"])} for t in tasks},
        "config": config,
        "date": time.time(),
        "total_evaluation_time_seconds": str(seconds),
    }
    if (sha := git_hash()) is not None:
        doc["git_hash"] = sha
    return doc


def write_eval(out_dir: str, document: dict, samples: list[dict]) -> str:
    """`results_<timestamp>.json` and `samples_<task>_<timestamp>.jsonl` under `out_dir`; returns the results path."""
    out = Path(out_dir)
    stamp = datetime.now().isoformat().replace(":", "-")
    by_task = defaultdict(list)
    for s in samples:
        by_task[s["task"]].append({k: v for k, v in s.items() if k != "task"})
    for task, rows in by_task.items():
        name = re.sub(r"[^\w.-]", "_", task)
        atomic_write_text(out / f"samples_{name}_{stamp}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    path = out / f"results_{stamp}.json"
    atomic_write_text(path, json.dumps(document, indent=1))
    return str(path)


def base_first_trials(cfg: EvalConfig, problems: list[Problem], problems_path: str, cache_dir: str, model: ModelRef,
                      model_path: str, engine: EngineConfig, fewshot: int = 0) -> list[Attempt]:
    """The base model's first trials on these problems: generated once, then read back by every later round."""
    key = content_key(stage="eval-first-trials", problems=file_sha256(problems_path), base=model.base_sha256,
                      engine=[engine.name, engine.dtype], max_tokens=cfg.trial_max_tokens, fewshot=fewshot)
    path = Path(cache_dir) / f"first-trials-{key[:16]}.jsonl"
    if path.exists():
        return read_jsonl(path, Attempt)
    attempts = first_trials(load_engine(engine, model_path, None), problems, cfg.trial_sampling(), fewshot)
    write_jsonl(path, attempts)
    return attempts


def evaluate_model(cfg: EvalConfig, problems_path: str, out_dir: str, cache_dir: str, model: ModelRef,
                   model_path: str, engine: EngineConfig, metadata: dict | None = None,
                   fewshot: int = 0) -> tuple[str, dict]:
    """Evaluate a model (base + adapter) on a problems file and write the results; returns (results path, metrics).

    `cache_dir` holds the paper protocol's base first trials, shared by every round of a run. `fewshot` must be
    the generation stage's, so the model is asked with the prompts it was trained on.
    """
    start = time.perf_counter()
    problems = read_jsonl(problems_path, Problem)
    first = None
    if cfg.protocol == "paper":
        first = base_first_trials(cfg, problems, problems_path, cache_dir, model, model_path, engine, fewshot)
    metrics, samples = run_eval(load_engine(engine, model_path, model.adapter), problems, cfg, first, fewshot)
    config = {
        "model": model.base,
        "model_args": {"pretrained": model_path, "adapter": model.adapter, "base_sha256": model.base_sha256,
                       "adapter_sha256": model.adapter_sha256},
        "gen_kwargs": {role: _gen_kwargs(cfg, role) for role in ("trial", "reflection")},
        "first_trial_adapter": None if cfg.protocol == "paper" else model.adapter,
        "protocol": cfg.protocol, "feedback": cfg.feedback, "turns": cfg.turns, "fewshot": fewshot,
        "engine": engine.model_dump(mode="json"),
        "seed": cfg.trial_sampling().seed, "problems": problems_path, "metadata": metadata or {},
    }
    document = results_document(metrics, cfg, config, time.perf_counter() - start, fewshot)
    return write_eval(out_dir, document, samples), metrics
