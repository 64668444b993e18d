"""Curation stage: trajectory shards -> D+, D± and Dpref, as HF parquet datasets with a dataset card.

Every reflection passes the same filters first, each counted: an empty reflection, an unparseable second trial,
a reflection that states the gold answer (the prompt forbids it, and training on it teaches the model to leak),
and an exact duplicate within its group. A group is one problem under one instruction: its reflections answered
the same prompt, which DPO needs for a pair.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from models.engines import Engine, SamplingConfig
from models.prompts import extract_answer, judge_messages
from reflectevo.schema import DatasetManifest, PairRecord, Problem, Reflection, SFTRecord, Trajectory
from reflectevo.shards import atomic_write_text, content_key, read_records, write_shard

DATASETS = {"dplus": SFTRecord, "dpm": PairRecord, "dpref": PairRecord}


class CurateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_pm_pairs_per_problem: int = Field(default=4, ge=0, description="Cap on D± pairs per problem and instruction.")
    max_pref_pairs_per_problem: int = Field(default=2, ge=0, description="Cap on Dpref candidates per group.")
    judge: str = Field(default="self", description="Dpref judge: 'self' (the round's model) or 'none' (no Dpref).")
    judge_max_tokens: int = Field(default=32, ge=1)


class JudgeResult(BaseModel):
    winner: int | None = Field(description="0 or 1; None when the two orders disagree or are unparseable.")
    prompts: list[str]
    verdicts: list[str]


class Judge(Protocol):
    name: str

    def compare(self, items: list[tuple[Problem, str, str]]) -> list[JudgeResult]:
        """For each (problem, reflection 0, reflection 1): which is better."""


class ModelJudge:
    """A chat model asked both orders; a pair counts only when both orders pick the same reflection."""

    def __init__(self, engine: Engine, name: str, max_tokens: int = 32):
        self.engine, self.name, self.max_tokens = engine, name, max_tokens

    def compare(self, items: list[tuple[Problem, str, str]]) -> list[JudgeResult]:
        prompts = [self.engine.render(judge_messages(p, a, b)) for p, a, b in items]
        prompts += [self.engine.render(judge_messages(p, b, a)) for p, a, b in items]
        outs = [c[0].text for c in self.engine.generate(prompts, SamplingConfig(max_tokens=self.max_tokens))]
        n, results = len(items), []
        for i in range(n):
            fwd, rev = (extract_answer(outs[i]) or "").upper(), (extract_answer(outs[n + i]) or "").upper()
            winner = 0 if (fwd, rev) == ("A", "B") else 1 if (fwd, rev) == ("B", "A") else None
            results.append(JudgeResult(winner=winner, prompts=[prompts[i], prompts[n + i]],
                                       verdicts=[outs[i], outs[n + i]]))
        return results


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
        first_trial_reasoning=t.first.output, first_trial_answer=t.first.answer or "", prompt=chosen.prompt,
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
