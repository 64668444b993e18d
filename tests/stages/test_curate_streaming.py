"""Streaming curation: the records, order, counts and card of the in-memory curation it replaced, shard by shard.

The reference is the pre-streaming code, kept verbatim in bench/curation.py (the benchmark's baseline).
"""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reflectevo.config import CurateConfig, GenerateConfig
from reflectevo.schema import PairRecord, Problem, SFTRecord, Trajectory, features_for
from reflectevo.shards import read_records, write_shard
from stages.curate import JudgeResult, curate, dataset_card, states_gold
from stages.generate import run_round_steps

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_curation", ROOT / "bench" / "curation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_round(bench, folder: Path, sizes: list[int]) -> tuple[list[str], list[Trajectory]]:
    """Synthetic trajectory shards of `sizes` trajectories (with every filter outcome), and their trajectories."""
    texts, rng = bench.Texts(1), random.Random(1)
    paths, trajectories, start = [], [], 0
    for shard, size in enumerate(sizes):
        rows = [bench.trajectory_row(i, shard, texts, rng) for i in range(start, start + size)]
        start += size
        # some correct first trials (no reflections) and some multi-instruction groups, as real rounds have
        for j, row in enumerate(rows):
            if j % 7 == 3:
                row["first"]["status"], row["reflections"] = "correct", []
            elif j % 5 == 1 and row["reflections"]:
                row["reflections"][-1]["instruction_id"] = "4-5-6"
        batch = [Trajectory.model_validate(r) for r in rows]
        path = folder / f"shard-{shard}.parquet"
        write_shard(path, batch, Trajectory, "k")
        paths.append(str(path))
        trajectories += batch
    return paths, trajectories


def read_all(manifests) -> dict[str, list]:
    return {name: read_records(m.path, SFTRecord if name == "dplus" else PairRecord) for name, m in manifests.items()}


class TestSameAsInMemory:
    def test_records_order_counts_and_card(self, bench, tmp_path):
        paths, trajectories = write_round(bench, tmp_path, [40, 0, 65, 1])
        cfg = CurateConfig(judge="none", max_pm_pairs_per_problem=3)
        expected, counts = bench.old_build_sets(trajectories, cfg, None)
        manifests = curate(paths, str(tmp_path / "out"), "key", cfg, None, 1, '{"a": 1}', batch_rows=16)

        got = read_all(manifests)
        assert got == expected and got["dplus"] and got["dpm"]
        assert all(m.counts == dict(counts) and list(m.counts) == list(counts) for m in manifests.values())
        assert {name: m.rows for name, m in manifests.items()} == {name: len(r) for name, r in expected.items()}
        assert (tmp_path / "out" / "README.md").read_text() == dataset_card(1, counts, '{"a": 1}')
        assert counts["dropped_states_gold_answer"] and counts["dropped_duplicate"] and counts["dropped_empty_reflection"]

    def test_the_judge_sees_each_shard_in_one_call(self, bench, scripted_engine, tmp_path):
        def reply(prompt, sample):
            if "Reflect on the attempt" in prompt:
                return ["Consider option C instead.", "Option C fits better.", "Check each step again."][sample]
            if "Your reflection on that attempt" in prompt:
                reflection = prompt.partition("Your reflection on that attempt:")[2]  # not the worked examples
                return "Again: Finish[C]" if "option c" in reflection.lower() else "Again: Finish[A]"
            return "Finish[A]"

        problems = [Problem(id=f"q{i}", task="choice", kind="choice", question=f"Q{i}?", answer="C",
                            choices=["a", "b", "c", "d"]) for i in range(5)]
        cfg = GenerateConfig(reflections=3, instructions=2)
        shards = [run_round_steps(scripted_engine(reply), problems[a:b], cfg, 1, s)[0]
                  for s, (a, b) in enumerate([(0, 3), (3, 5)])]
        paths = []
        for s, shard in enumerate(shards):
            write_shard(tmp_path / f"t{s}.parquet", shard, Trajectory, "k")
            paths.append(str(tmp_path / f"t{s}.parquet"))

        class Alternating:
            name = "alternating"

            def __init__(self):
                self.calls = []

            def compare(self, items):
                self.calls.append(len(items))
                return [JudgeResult(winner=[0, 1, None][i % 3], prompts=[f"p{i}", "q"], verdicts=["A", "B"])
                        for i, _ in enumerate(items)]

        judge = Alternating()
        manifests = curate(paths, str(tmp_path / "out"), "key", CurateConfig(), judge, 1, "{}")
        assert judge.calls == [6, 4]  # two instructions x (3 problems, then 2) x 1 candidate pair each
        reference = Alternating()
        expected = {}
        for shard in shards:  # the old code judged the whole round at once; here each shard is one batch
            sets, _ = bench.old_build_sets(shard, CurateConfig(), reference)
            expected = {name: expected.get(name, []) + records for name, records in sets.items()}
        got = read_all(manifests)
        assert got == expected and len(got["dpref"]) == 7 and manifests["dpref"].counts["dropped_judge_inconsistent"] == 3
        assert {r.chosen for r in got["dpref"]} == {"Consider option C instead.", "Option C fits better."}


def test_an_empty_dataset_keeps_its_schema_and_loads(bench, tmp_path):
    from datasets import load_dataset

    paths, _ = write_round(bench, tmp_path, [12])
    manifests = curate(paths, str(tmp_path / "out"), "key", CurateConfig(judge="none"), None, 1, "{}")
    folder = Path(manifests["dpref"].path)
    assert manifests["dpref"].rows == 0 and [f.name for f in folder.glob("*.parquet")] == ["train-00000-of-00001.parquet"]
    file = folder / "train-00000-of-00001.parquet"
    assert pq.ParquetFile(file).metadata.num_row_groups == 0  # a 0-row row group breaks `datasets`' reader
    assert pq.read_table(file).schema == features_for(PairRecord).arrow_schema
    assert read_records(folder, PairRecord) == []
    streamed = load_dataset("parquet", data_files=str(folder / "*.parquet"), split="train", streaming=True)
    assert list(streamed) == [] and streamed.features == features_for(PairRecord)
    loaded = load_dataset("parquet", data_files=str(Path(manifests["dplus"].path) / "*.parquet"), split="train")
    assert len(loaded) == manifests["dplus"].rows > 0


def test_datasets_are_hub_named_shards_with_markers(bench, tmp_path):
    paths, _ = write_round(bench, tmp_path, [30])
    out = tmp_path / "out"
    first = curate(paths, str(out), "key-1", CurateConfig(judge="none"), None, 1, "{}")
    again = curate(paths, str(out), "key-2", CurateConfig(judge="none"), None, 1, "{}")
    assert again["dplus"].sha256 == first["dplus"].sha256  # the manifest hash is of the content, not the key
    marker = json.loads((out / "dplus" / "train-00000-of-00001.parquet.done").read_text())
    assert marker["key"] == "key-2" and marker["rows"] == again["dplus"].rows
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "dplus", "dpm", "dpref"]  # no staging left


@pytest.mark.parametrize("text", [
    "The answer is C.", "the correct option: (c)", "ANSWER = 'blue' then", "final choice is [C]", "answer:c",
    "answer is cc", "Option C looks plausible.", "the answer is Blueish", "choice\n\nis $c$", "", "Re-check the sum.",
])
def test_states_gold_is_the_old_check(bench, text):
    p = Problem(id="q", task="choice", kind="choice", question="?", answer="C", choices=["red", "green", "blue"])
    assert states_gold(p, text) is bench.old_states_gold(p, text)


def test_states_gold_is_the_old_check_on_math_and_generated_text(bench):
    math = Problem(id="m", task="math", kind="math", question="?", answer=r"\frac{3}{4}")
    for text in [r"so the Answer is \frac{3}{4}.", r"answer: \FRAC{3}{4}", "answer is 3/4", r"answer is \frac{3}{4}x"]:
        assert states_gold(math, text) is bench.old_states_gold(math, text)
    texts, rng = bench.Texts(3), random.Random(3)
    choice = Problem(id="q", task="choice", kind="choice", question="?", answer="C", choices=["red", "green", "blue"])
    sample = [texts("reflection") + rng.choice([" answer is c", " option: blue.", " choice C", ""]) for _ in range(400)]
    verdicts = [states_gold(choice, t) for t in sample]
    assert verdicts == [bench.old_states_gold(choice, t) for t in sample] and 0 < sum(verdicts) < len(sample)


def test_a_record_batch_without_trajectories_adds_nothing(tmp_path):
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.Table.from_pylist([], schema=features_for(Trajectory).arrow_schema), empty)
    manifests = curate([str(empty)], str(tmp_path / "out"), "k", CurateConfig(judge="none"), None, 1, "{}")
    assert {m.rows for m in manifests.values()} == {0} and manifests["dplus"].counts["dplus"] == 0
