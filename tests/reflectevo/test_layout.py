"""RoundLayout: every path of a round folder, spelled as the README's tree spells it."""

from pathlib import Path

from reflectevo.config import RoundConfig
from reflectevo.layout import RoundLayout


def test_paths_match_the_documented_round_folder():
    layout = RoundConfig(run_dir="runs", name="demo").layout(3)
    folder = Path("runs/demo/round-3")
    assert layout.folder == folder
    assert layout.config == folder / "config.json" and layout.manifest == folder / "manifest.json"
    assert layout.pool_shard(1) == folder / "problems" / "pool-00001.jsonl"
    assert layout.eval_problems == folder / "problems" / "eval.jsonl"
    assert layout.trajectory_shard(12) == folder / "trajectories" / "shard-00012.parquet"
    assert layout.dataset_card == folder / "datasets" / "README.md"
    assert layout.adapter == folder / "adapter" and layout.eval == folder / "eval"
    assert layout.relative_config == Path("round-3/config.json")


def test_rounds_in_lists_round_folders_only_in_numeric_order(tmp_path):
    for name in ("round-10", "round-2", "round-x", "round-1.bak", "notes"):
        (tmp_path / name).mkdir()
    assert RoundLayout.rounds_in(tmp_path) == [2, 10]
    assert RoundLayout.rounds_in(tmp_path / "missing") == []
