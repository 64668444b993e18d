"""Curation stage: trajectory shards -> D+, D± and Dpref, as HF parquet datasets with a dataset card.

Every reflection passes the same filters first, each counted: an empty reflection, an unparseable second trial,
a reflection that states the gold answer (the prompt forbids it, and training on it teaches the model to leak),
and an exact duplicate within its group. A group is one problem under one instruction: its reflections answered
the same prompt, which DPO needs for a pair.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from abc import ABC, abstractmethod
from collections import Counter
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.engines import Engine, SamplingConfig, load_engine
from models.prompts import extract_answer, judge_messages
from reflectevo.schema import DatasetManifest, ModelRef, PairRecord, Problem, Reflection, SFTRecord, Trajectory
from reflectevo.shards import atomic_write_text, content_key, read_records, write_shard

DATASETS = {"dplus": SFTRecord, "dpm": PairRecord, "dpref": PairRecord}


class CurateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_pm_pairs_per_problem: int = Field(default=4, ge=0, description="Cap on D± pairs per problem and instruction.")
    max_pref_pairs_per_problem: int = Field(default=2, ge=0, description="Cap on Dpref candidates per group.")
    judge: str = Field(default="self", description="Dpref judge: 'self' (the round's model), 'none' (no Dpref), "
                       "'model:<name or path>' (another local model, loaded like `model`) or 'openai:<base_url>' "
                       "(an OpenAI-compatible chat completions endpoint; set judge_model).")
    judge_model: str = Field(default="", description="Model name sent to an 'openai:' judge endpoint.")
    judge_api_key_env: str = Field(default="OPENAI_API_KEY", description="Environment variable holding the 'openai:' "
                                   "endpoint's API key; unset: no Authorization header (local servers).")
    judge_timeout_s: float = Field(default=60.0, gt=0, description="Per-request timeout of an 'openai:' judge.")
    judge_max_tokens: int = Field(default=32, ge=1)

    @field_validator("judge")
    @classmethod
    def _judge_kind(cls, value: str) -> str:
        kind, _, target = value.partition(":")
        if value in ("self", "none") or (kind in ("model", "openai") and target):
            return value
        raise ValueError(f"curate.judge {value!r}: use 'self', 'none', 'model:<name or path>' or 'openai:<base_url>'")

    @model_validator(mode="after")
    def _openai_needs_model(self) -> CurateConfig:
        if self.judge.startswith("openai:") and not self.judge_model:
            raise ValueError(f"curate.judge {self.judge!r} needs curate.judge_model, the model name the endpoint "
                             "serves")
        return self


class JudgeResult(BaseModel):
    winner: int | None = Field(description="0 or 1; None when the two orders disagree or are unparseable.")
    prompts: list[str]
    verdicts: list[str]


class Judge(Protocol):
    name: str

    def compare(self, items: list[tuple[Problem, str, str]]) -> list[JudgeResult]:
        """For each (problem, reflection 0, reflection 1): which is better."""


class BothOrdersJudge(ABC):
    """Asks about each pair in both orders; a pair counts only when both orders pick the same reflection, which
    cancels a judge's bias for the first (or second) position. Subclasses say how one conversation is asked."""

    name: str

    @abstractmethod
    def ask(self, conversations: list[list[dict[str, str]]]) -> tuple[list[str], list[str]]:
        """(exact prompt as sent, raw reply) for each conversation."""

    def compare(self, items: list[tuple[Problem, str, str]]) -> list[JudgeResult]:
        conversations = [judge_messages(p, a, b) for p, a, b in items] + [judge_messages(p, b, a) for p, a, b in items]
        prompts, outs = self.ask(conversations)
        n, results = len(items), []
        for i in range(n):
            fwd, rev = (extract_answer(outs[i]) or "").upper(), (extract_answer(outs[n + i]) or "").upper()
            winner = 0 if (fwd, rev) == ("A", "B") else 1 if (fwd, rev) == ("B", "A") else None
            results.append(JudgeResult(winner=winner, prompts=[prompts[i], prompts[n + i]],
                                       verdicts=[outs[i], outs[n + i]]))
        return results


class ModelJudge(BothOrdersJudge):
    """A local chat model (the round's own, or another): all prompts in one batched, greedy engine call."""

    def __init__(self, engine: Engine, name: str, max_tokens: int = 32):
        self.engine, self.name, self.max_tokens = engine, name, max_tokens

    def ask(self, conversations: list[list[dict[str, str]]]) -> tuple[list[str], list[str]]:
        prompts = [self.engine.render(c) for c in conversations]
        outs = [c[0].text for c in self.engine.generate(prompts, SamplingConfig(max_tokens=self.max_tokens))]
        return prompts, outs


class OpenAIJudge(BothOrdersJudge):
    """Any OpenAI-compatible endpoint, through its `/v1/chat/completions` HTTP API, greedy.

    `base_url` is the server root or its `/v1` root (the OpenAI client's convention); the stored prompt is the
    request's messages as JSON, since the server applies its own chat template.
    """

    def __init__(self, base_url: str, model: str, max_tokens: int = 32, api_key: str | None = None,
                 timeout_s: float = 60.0):
        root = base_url.rstrip("/")
        self.url = root + ("/chat/completions" if root.endswith("/v1") else "/v1/chat/completions")
        self.model, self.max_tokens, self.api_key, self.timeout_s = model, max_tokens, api_key, timeout_s
        self.name = f"openai:{root}#{model}"

    def ask(self, conversations: list[list[dict[str, str]]]) -> tuple[list[str], list[str]]:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        prompts, outs = [], []
        with httpx.Client(timeout=self.timeout_s, headers=headers) as client:
            for messages in conversations:
                response = client.post(self.url, json={"model": self.model, "messages": messages, "temperature": 0,
                                                       "max_tokens": self.max_tokens})
                response.raise_for_status()
                try:
                    outs.append(response.json()["choices"][0]["message"]["content"] or "")
                except (ValueError, KeyError, IndexError, TypeError):
                    raise ValueError(f"judge endpoint {self.url} answered without choices[0].message.content: "
                                     f"{response.text[:200]!r}") from None
                prompts.append(json.dumps(messages, ensure_ascii=False))
        return prompts, outs


def make_judge(cfg: CurateConfig, engine_config: str, model: ModelRef, model_path: str) -> Judge | None:
    """The Dpref judge `cfg.judge` names; None for 'none'."""
    if cfg.judge == "none":
        return None
    if cfg.judge == "self":
        engine = load_engine(engine_config, model_path, model.adapter)
        return ModelJudge(engine, name=f"self:{model.base}" + (f"+{model.adapter}" if model.adapter else ""),
                          max_tokens=cfg.judge_max_tokens)
    kind, target = cfg.judge.split(":", 1)
    if kind == "model":
        from models.loading import resolve_model

        return ModelJudge(load_engine(engine_config, resolve_model(target), None), name=cfg.judge,
                          max_tokens=cfg.judge_max_tokens)
    return OpenAIJudge(target, cfg.judge_model, cfg.judge_max_tokens, os.environ.get(cfg.judge_api_key_env),
                       cfg.judge_timeout_s)


def states_gold(problem: Problem, text: str) -> bool:
    """Whether a reflection gives the answer away: a `Finish[...]`, or 'the answer is <gold>' in any form."""
    if "Finish[" in text:
        return True
    gold = re.escape(problem.answer.strip())
    if not gold:
        return False
    golds = [gold]
    if problem.kind == "choice" and problem.choices:
        idx = ord(problem.answer.strip().upper()) - ord("A")
        if 0 <= idx < len(problem.choices):
            golds.append(re.escape(problem.choices[idx].strip()))
    pattern = r"(correct|right|final)?\s*(answer|option|choice)\s*(is|should be|:|=)\s*[\(\[\"'$]*(" + "|".join(golds) + r")(?!\w)"
    return re.search(pattern, text, flags=re.IGNORECASE) is not None


def filter_reason(problem: Problem, r: Reflection, seen: set[str]) -> str | None:
    if not r.text.strip():
        return "empty_reflection"
    if r.second.status == "unparseable":
        return "unparseable_second_trial"
    if states_gold(problem, r.text):
        return "states_gold_answer"
    if r.text in seen:
        return "duplicate"
    return None


def sft_record(t: Trajectory, r: Reflection) -> SFTRecord:
    p = t.problem
    return SFTRecord(
        id=f"{p.task}/{p.id}/{r.instruction_id}/{r.sample}", problem_id=p.id, task=p.task, question=p.question,
        answer=p.answer, instruction_id=r.instruction_id, first_trial_prompt=t.first.prompt,
        first_trial_reasoning=t.first.output, first_trial_answer=t.first.answer or "", reflection_prompt=r.prompt,
        reflection=r.text, second_trial_prompt=r.second.prompt, second_trial_reasoning=r.second.output,
        second_trial_answer=r.second.answer or "",
    )


def pair_record(kind: str, t: Trajectory, chosen: Reflection, rejected: Reflection,
                judge: JudgeResult | None = None, judge_name: str = "") -> PairRecord:
    p = t.problem
    return PairRecord(
        id=f"{p.task}/{p.id}/{chosen.instruction_id}/{chosen.sample}>{rejected.sample}", kind=kind, problem_id=p.id,
        task=p.task, question=p.question, answer=p.answer, instruction_id=chosen.instruction_id,
        first_trial_reasoning=t.first.output, first_trial_answer=t.first.answer or "",
        first_trial_prompt=t.first.prompt, prompt=chosen.prompt,
        chosen=chosen.text, rejected=rejected.text, second_trial_reasoning_chosen=chosen.second.output,
        second_trial_answer_chosen=chosen.second.answer or "", second_trial_reasoning_rejected=rejected.second.output,
        second_trial_answer_rejected=rejected.second.answer or "", judge=judge_name,
        judge_prompts=judge.prompts if judge else [], judge_verdicts=judge.verdicts if judge else [],
    )


def build_sets(trajectories: list[Trajectory], cfg: CurateConfig, judge: Judge | None
               ) -> tuple[dict[str, list[BaseModel]], Counter]:
    """D+, D± and Dpref records from trajectories, and the count of each filter and outcome."""
    counts: Counter = Counter()
    dplus: list[SFTRecord] = []
    dpm: list[PairRecord] = []
    pref_candidates: list[tuple[Trajectory, Reflection, Reflection]] = []
    for t in trajectories:
        groups: dict[str, list[Reflection]] = {}
        for r in t.reflections:
            groups.setdefault(r.instruction_id, []).append(r)
        for group in groups.values():
            seen: set[str] = set()
            kept = []
            for r in group:
                counts["reflections"] += 1
                reason = filter_reason(t.problem, r, seen)
                seen.add(r.text)
                if reason:
                    counts[f"dropped_{reason}"] += 1
                else:
                    kept.append(r)
            fixed = [r for r in kept if r.second.status == "correct"]
            unfixed = [r for r in kept if r.second.status != "correct"]
            dplus += [sft_record(t, r) for r in fixed]
            pm = list(itertools.product(fixed, unfixed))[: cfg.max_pm_pairs_per_problem]
            dpm += [pair_record("pm", t, c, rj) for c, rj in pm]
            pref_candidates += [(t, a, b) for a, b in itertools.combinations(fixed, 2)][: cfg.max_pref_pairs_per_problem]
    dpref: list[PairRecord] = []
    if judge is not None and pref_candidates:
        verdicts = judge.compare([(t.problem, a.text, b.text) for t, a, b in pref_candidates])
        for (t, a, b), v in zip(pref_candidates, verdicts):
            if v.winner is None:
                counts["dropped_judge_inconsistent"] += 1
                continue
            chosen, rejected = (a, b) if v.winner == 0 else (b, a)
            dpref.append(pair_record("pref", t, chosen, rejected, v, judge.name))
    counts.update(dplus=len(dplus), dpm=len(dpm), dpref_candidates=len(pref_candidates), dpref=len(dpref))
    return {"dplus": dplus, "dpm": dpm, "dpref": dpref}, counts


def dataset_card(round_: int, counts: Counter, config: dict) -> str:
    from huggingface_hub import DatasetCard, DatasetCardData

    data = DatasetCardData(
        pretty_name=f"ReflectEvo round {round_} reflections",
        configs=[{"config_name": name, "data_files": [{"split": "train", "path": f"{name}/*.parquet"}]}
                 for name in DATASETS],
        tags=["reflectevo", "self-reflection"],
    )
    rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(counts.items()))
    body = (
        f"# ReflectEvo round {round_}\n\nSelf-generated reflection data: `dplus` (reflections whose second trial "
        "was verified correct; SFT), `dpm` (fixing vs not fixing reflections of one problem and prompt; DPO) and "
        "`dpref` (two fixing reflections, the judge's preferred one chosen; DPO).\n\n"
        f"| count | value |\n|---|---|\n{rows}\n\n## Round config\n\n```json\n{config}\n```\n"
    )
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n{body}"))


def curation_key(shard_shas: list[str], cfg: CurateConfig, judge_model: dict, round_: int) -> str:
    return content_key(stage="curate", round=round_, shards=shard_shas, curate=cfg.model_dump(), judge=judge_model)


def curate(trajectory_paths: list[str], out_dir: str, key: str, cfg: CurateConfig, judge: Judge | None,
           round_: int, config_json: str) -> dict[str, DatasetManifest]:
    """Write the three datasets and the card under `out_dir`; returns a manifest per dataset."""
    trajectories = [t for p in trajectory_paths for t in read_records(p, Trajectory)]
    sets, counts = build_sets(trajectories, cfg, judge)
    out = Path(out_dir)
    manifests = {}
    for name, records in sets.items():
        path = out / name / "train-00000-of-00001.parquet"
        info = write_shard(path, records, DATASETS[name], key)
        manifests[name] = DatasetManifest(name=name, path=str(path), rows=info["rows"], sha256=info["sha256"],
                                          counts=dict(counts))
    atomic_write_text(out / "README.md", dataset_card(round_, counts, config_json))
    return manifests
