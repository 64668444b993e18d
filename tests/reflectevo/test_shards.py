"""Shards: atomic writes, completion markers and content keys decide what a new run may skip."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from reflectevo.schema import Attempt, Problem, Trajectory, features_for
from reflectevo.shards import content_key, finished, marker_path, read_records, write_shard


def trajectory(i: int) -> Trajectory:
    p = Problem(id=f"q{i}", task="math", kind="math", question="1+1?", answer="2")
    return Trajectory(round=1, shard=0, problem=p,
                      first=Attempt(trial=1, prompt="p", output="Finish[2]", answer="2", status="correct"))


def test_shard_round_trips_with_the_schema_features(tmp_path):
    path = tmp_path / "shard.parquet"
    info = write_shard(path, [trajectory(0), trajectory(1)], Trajectory, "k1", {"counts": {"problems": 2}})
    assert info["rows"] == 2 and info["meta"]["counts"] == {"problems": 2}
    assert read_records(path, Trajectory) == [trajectory(0), trajectory(1)]
    assert pq.read_schema(path).names == list(features_for(Trajectory))


def test_empty_shard_keeps_the_schema(tmp_path):
    path = tmp_path / "empty.parquet"
    write_shard(path, [], Trajectory, "k")
    assert read_records(path, Trajectory) == [] and pq.read_schema(path).names == list(features_for(Trajectory))


def test_finished_needs_marker_same_key_and_unchanged_file(tmp_path):
    path = tmp_path / "shard.parquet"
    write_shard(path, [trajectory(0)], Trajectory, "k1")
    assert finished(path, "k1")["rows"] == 1
    assert finished(path, "other-key") is None
    path.write_bytes(path.read_bytes() + b"x")
    assert finished(path, "k1") is None
    write_shard(path, [trajectory(0)], Trajectory, "k1")
    marker_path(path).unlink()
    assert finished(path, "k1") is None


def test_failed_write_leaves_no_shard_and_no_temp_file(tmp_path, monkeypatch):
    import datasets

    path = tmp_path / "shard.parquet"

    def crash(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(datasets.Dataset, "to_parquet", crash)
    with pytest.raises(OSError):
        write_shard(path, [trajectory(0)], Trajectory, "k1")
    assert list(tmp_path.iterdir()) == []


def test_content_key_changes_with_any_part():
    base = content_key(round=1, shard=0, model="a", sampling={"t": 0.8})
    assert base == content_key(shard=0, round=1, model="a", sampling={"t": 0.8})
    assert base != content_key(round=1, shard=0, model="b", sampling={"t": 0.8})
    assert base != content_key(round=1, shard=0, model="a", sampling={"t": 0.7})
