"""Curation at ReflectEvo-460k scale: records per second and peak memory of `curate()`, with no judge.

    OMP_NUM_THREADS=1 python bench/curation.py [--reflections 460000] [--shard-size 1000] [--old-reflections 30000]

Synthetic trajectory shards are written first (not timed): 3 reflections per wrong first trial, under one
instruction, with the text lengths the ReflectEvo paper reports (question ~130, first answer ~189, second answer
~237, reflection ~250 tokens, at ~4.5 characters a token) inside prompts built like the real ones (each later
prompt holds the question and the earlier outputs), about 14 % of second trials correct (the paper's 13.93 %), and
a few reflections for each filter (empty, unparseable second trial, states the gold answer, duplicate).

Each curation runs in its own process, so its peak RSS is its own; seconds (wall) and cpu_s (the process's CPU
time, which a busy machine does not inflate) are the curation's, imports excluded.
Prints

    curation_records_per_s=<reflections/s> peak_rss_mib=<MiB> reflections=<n> seconds=<s> ...
    old_in_memory reflections=<m> records_per_s=<a> ... ratio_records_per_s=<new/old> ratio_rss_per_reflection=<old/new>

where the second line runs the pre-streaming in-memory path (kept here only, as the baseline) and the streaming
path on the same `--old-reflections` shards, a size the old path can hold, in the same run: ratio_records_per_s
compares the two there, ratio_rss_per_reflection the old path's peak RSS per reflection with the streaming one's at
full scale.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__":
    sys.path[0] = str(ROOT)  # run as a script from a checkout; bench/verifiers.py must not shadow `verifiers`

from reflectevo.config import CurateConfig  # noqa: E402
from reflectevo.schema import PairRecord, Problem, Reflection, SFTRecord, Trajectory  # noqa: E402
from stages.curate import Judge, JudgeResult  # noqa: E402

REFLECTIONS_PER_TRAJECTORY = 3
CHARS = {"question": 585, "first": 850, "second": 1066, "reflection": 1125}  # paper's mean tokens x 4.5
WORDS = ("the of and to in is that for it as with was on be by this are or from at which an not have but "
         "answer option step check each value sum equation premise conclusion therefore because assume case "
         "count total ratio angle number first second third previous attempt error plan review correct").split()


def corpus(seed: int, size: int = 4_000_000) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choices(WORDS, k=size // 5))


class Texts:
    """Distinct texts of about the paper's lengths: slices of a random-word corpus at random offsets."""

    def __init__(self, seed: int):
        self.rng, self.text = random.Random(seed), corpus(seed)

    def __call__(self, kind: str) -> str:
        n = int(CHARS[kind] * self.rng.uniform(0.5, 1.5))
        start = self.rng.randrange(len(self.text) - n)
        return self.text[start : start + n]


def trajectory_row(i: int, shard: int, texts: Texts, rng: random.Random) -> dict:
    """One wrong first trial on a 4-option question (gold 'C') and its reflections, as a Trajectory row."""
    question, first = f"Q{i}: " + texts("question"), texts("first")
    head = f"<|im_start|>user\nSolve the following problem. Think step by step. Finish[X].\n\nQuestion: {question}"
    first_prompt = head + "<|im_end|>\n<|im_start|>assistant\n"
    reflections = []
    for sample in range(REFLECTIONS_PER_TRAJECTORY):
        roll = rng.random()
        text = ("" if roll < 0.01 else "The correct answer is C." if roll < 0.03
                else reflections[-1]["text"] if roll < 0.04 and reflections else f"R{i}.{sample}: " + texts("reflection"))
        second_ok = rng.random() < 0.1393
        status = "unparseable" if roll > 0.97 else "correct" if second_ok else "wrong"
        reflections.append({
            "instruction_id": "1-2-3", "sample": sample,
            "prompt": f"<|im_start|>user\nYou tried to solve a problem and failed.\n\nQuestion: {question}\n\n"
                      f"Your previous attempt:\n{first}\n\nReflect on the attempt:\nCheck every step.<|im_end|>\n"
                      "<|im_start|>assistant\n",
            "text": text, "output_tokens": len(text) // 4,
            "second": {"trial": 2, "prompt": f"{head}\n\nA previous attempt failed:\n{first}\n\nYour reflection on "
                                              f"that attempt:\n{text}\n\nNow solve the problem again.<|im_end|>\n"
                                              "<|im_start|>assistant\n",
                       "output": texts("second") + ("Finish[C]" if second_ok else "Finish[B]"),
                       "answer": None if status == "unparseable" else "C" if second_ok else "B", "status": status,
                       "reason": "", "output_tokens": 237},
        })
    return {"round": 1, "shard": shard,
            "problem": {"id": f"q{i}", "task": "choice", "kind": "choice", "question": question, "answer": "C",
                        "choices": ["red", "green", "blue", "white"], "tests": [], "test_setup_code": "",
                        "source": "synthetic"},
            "first": {"trial": 1, "prompt": first_prompt, "output": first + "Finish[A]", "answer": "A",
                      "status": "wrong", "reason": "", "output_tokens": 189},
            "reflections": reflections}


def write_trajectories(folder: Path, reflections: int, shard_size: int, seed: int = 0) -> list[str]:
    """Trajectory shards in the generation stage's schema; reused when `folder` already holds them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from reflectevo.schema import Trajectory, features_for

    folder.mkdir(parents=True, exist_ok=True)
    done = folder / "done.json"
    if done.exists():
        return json.loads(done.read_text())
    schema = features_for(Trajectory).arrow_schema
    texts, rng = Texts(seed), random.Random(seed)
    n, paths = reflections // REFLECTIONS_PER_TRAJECTORY, []
    for shard, start in enumerate(range(0, n, shard_size)):
        rows = [trajectory_row(i, shard, texts, rng) for i in range(start, min(n, start + shard_size))]
        path = folder / f"shard-{shard:05d}.parquet"
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
        paths.append(str(path))
    done.write_text(json.dumps(paths))
    return paths


# ---------------------------------------------------------------------------------------------------------------
# The in-memory curation as it was before streaming (reflectevo/curate.py at 9ba9de0, now stages/curate.py), kept
# verbatim as the baseline of the ratio and as the reference tests/stages/test_curate_streaming.py checks records
# against.

def old_states_gold(problem: Problem, text: str) -> bool:
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


def old_filter_reason(problem: Problem, r: Reflection, seen: set[str]) -> str | None:
    if not r.text.strip():
        return "empty_reflection"
    if r.second.status == "unparseable":
        return "unparseable_second_trial"
    if old_states_gold(problem, r.text):
        return "states_gold_answer"
    if r.text in seen:
        return "duplicate"
    return None


def old_sft_record(t: Trajectory, r: Reflection) -> SFTRecord:
    p = t.problem
    return SFTRecord(
        id=f"{p.task}/{p.id}/{r.instruction_id}/{r.sample}", problem_id=p.id, task=p.task, question=p.question,
        answer=p.answer, instruction_id=r.instruction_id, first_trial_prompt=t.first.prompt,
        first_trial_reasoning=t.first.output, first_trial_answer=t.first.answer or "", reflection_prompt=r.prompt,
        reflection=r.text, second_trial_prompt=r.second.prompt, second_trial_reasoning=r.second.output,
        second_trial_answer=r.second.answer or "",
    )


def old_pair_record(kind: str, t: Trajectory, chosen: Reflection, rejected: Reflection,
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


def old_build_sets(trajectories: list[Trajectory], cfg: CurateConfig, judge: Judge | None
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
                reason = old_filter_reason(t.problem, r, seen)
                seen.add(r.text)
                if reason:
                    counts[f"dropped_{reason}"] += 1
                else:
                    kept.append(r)
            fixed = [r for r in kept if r.second.status == "correct"]
            unfixed = [r for r in kept if r.second.status != "correct"]
            dplus += [old_sft_record(t, r) for r in fixed]
            pm = list(itertools.product(fixed, unfixed))[: cfg.max_pm_pairs_per_problem]
            dpm += [old_pair_record("pm", t, c, rj) for c, rj in pm]
            pref_candidates += [(t, a, b) for a, b in itertools.combinations(fixed, 2)][: cfg.max_pref_pairs_per_problem]
    dpref: list[PairRecord] = []
    if judge is not None and pref_candidates:
        verdicts = judge.compare([(t.problem, a.text, b.text) for t, a, b in pref_candidates])
        for (t, a, b), v in zip(pref_candidates, verdicts):
            if v.winner is None:
                counts["dropped_judge_inconsistent"] += 1
                continue
            chosen, rejected = (a, b) if v.winner == 0 else (b, a)
            dpref.append(old_pair_record("pref", t, chosen, rejected, v, judge.name))
    counts.update(dplus=len(dplus), dpm=len(dpm), dpref_candidates=len(pref_candidates), dpref=len(dpref))
    return {"dplus": dplus, "dpm": dpm, "dpref": dpref}, counts


def old_in_memory(paths: list[str], out: Path) -> dict:
    """Curation as it was before streaming: every trajectory of the round as pydantic objects, every record in
    memory, each dataset one parquet file written through `datasets`."""
    import pyarrow.parquet as pq

    from reflectevo.shards import write_shard
    from stages.curate import DATASETS

    trajectories = [Trajectory.model_validate(row) for p in paths for row in pq.read_table(p).to_pylist()]
    sets, counts = old_build_sets(trajectories, CurateConfig(judge="none"), None)
    for name, records in sets.items():
        write_shard(out / name / "train-00000-of-00001.parquet", records, DATASETS[name], "bench")
    return dict(Counter(counts))


def run_curation(paths: list[str], out: Path, old: bool) -> dict:
    if old:
        return old_in_memory(paths, out)
    from stages.curate import curate

    return next(iter(curate(paths, str(out), "bench", CurateConfig(judge="none"), None, 1, "{}").values())).counts


def measure(paths_file: Path, out: Path, old: bool) -> dict:
    """Runs one curation in a child process: its seconds (imports excluded), peak RSS and counts."""
    command = [sys.executable, __file__, "--child", str(paths_file), str(out)] + (["--old"] if old else [])
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])


def child(paths_file: str, out: str, old: bool) -> None:
    import pyarrow.parquet  # noqa: F401  imports are not curation time
    import stages.curate  # noqa: F401

    start, cpu = time.perf_counter(), time.process_time()
    counts = run_curation(json.loads(Path(paths_file).read_text()), Path(out), old)
    seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "cpu_s": cpu_s, "rss_mib": rss_mib, "counts": counts}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reflections", type=int, default=460_000)
    parser.add_argument("--shard-size", type=int, default=1000, help="trajectories per trajectory shard")
    parser.add_argument("--old-reflections", type=int, default=30_000, help="size for the old in-memory path")
    parser.add_argument("--data-dir", default=None, help="keep the synthetic shards here (reused on a rerun)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--old", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child, args.old)

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data_dir) if args.data_dir else Path(tmp) / "data"

        def run(n: int, old: bool) -> dict:
            folder = data / f"r{n}-s{args.shard_size}"
            write_trajectories(folder, n, args.shard_size)
            return measure(folder / "done.json", Path(tmp) / f"out-{n}-{old}", old)

        new, small, base = run(args.reflections, False), run(args.old_reflections, False), run(args.old_reflections, True)
        assert small["counts"] == base["counts"], (small["counts"], base["counts"])  # same records, counted alike
        rate = {name: f["counts"]["reflections"] / f["seconds"] for name, f in (("new", new), ("small", small),
                                                                               ("base", base))}
        per_reflection = {name: f["rss_mib"] / f["counts"]["reflections"] for name, f in (("new", new), ("base", base))}
        print(f"curation_records_per_s={rate['new']:.0f} peak_rss_mib={new['rss_mib']:.0f} "
              f"reflections={new['counts']['reflections']} seconds={new['seconds']:.1f} cpu_s={new['cpu_s']:.1f} dplus={new['counts']['dplus']} "
              f"dpm={new['counts']['dpm']} shard_size={args.shard_size}", flush=True)
        print(f"old_in_memory reflections={base['counts']['reflections']} records_per_s={rate['base']:.0f} "
              f"peak_rss_mib={base['rss_mib']:.0f} seconds={base['seconds']:.1f} cpu_s={base['cpu_s']:.1f} streaming_same_shards_records_per_s="
              f"{rate['small']:.0f} streaming_same_shards_peak_rss_mib={small['rss_mib']:.0f} "
              f"ratio_records_per_s={rate['small'] / rate['base']:.2f} "
              f"ratio_rss_per_reflection={per_reflection['base'] / per_reflection['new']:.1f}", flush=True)


if __name__ == "__main__":
    main()
