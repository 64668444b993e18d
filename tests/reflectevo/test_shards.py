"""Shards: atomic writes, completion markers and content keys decide what a new run may skip."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from reflectevo.schema import Attempt, Problem, Trajectory, features_for
from reflectevo.shards import DatasetWriter, content_key, finished, marker_path, read_records, write_shard


def trajectory(i: int) -> Trajectory:
    p = Problem(id=f"q{i}", task="math", kind="math", question="1+1?", answer="2")
    return Trajectory(round=1, shard=0, problem=p,
                      first=Attempt(trial=1, prompt="p", output="Finish[2]", answer="2", status="correct"))


def test_shard_round_trips_with_the_schema_features(tmp_path):
    path = tmp_path / "shard.parquet"
    info = write_shard(path, [trajectory(0), trajectory(1)], Trajectory, "k1", {"counts": {"problems": 2}})
    assert info.rows == 2 and info.meta["counts"] == {"problems": 2}
    assert read_records(path, Trajectory) == [trajectory(0), trajectory(1)]
    assert pq.read_schema(path).names == list(features_for(Trajectory))


def test_empty_shard_keeps_the_schema(tmp_path):
    path = tmp_path / "empty.parquet"
    write_shard(path, [], Trajectory, "k")
    assert read_records(path, Trajectory) == [] and pq.read_schema(path).names == list(features_for(Trajectory))


def test_finished_needs_marker_same_key_and_unchanged_file(tmp_path):
    path = tmp_path / "shard.parquet"
    write_shard(path, [trajectory(0)], Trajectory, "k1")
    assert finished(path, "k1").rows == 1
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


def rows_table(n: int, start: int = 0):
    import pyarrow as pa

    return pa.Table.from_pylist([trajectory(i).model_dump() for i in range(start, start + n)],
                                schema=features_for(Trajectory).arrow_schema)


def test_dataset_writer_splits_into_hub_named_shards_in_order(tmp_path):
    folder = tmp_path / "dplus"
    with DatasetWriter(folder, Trajectory, "k", row_group_bytes=1, shard_bytes=1) as writer:
        for start in (0, 2, 4):
            writer.write(rows_table(2, start))
        info = writer.close()
    names = ["train-00000-of-00003.parquet", "train-00001-of-00003.parquet", "train-00002-of-00003.parquet"]
    assert info["files"] == names and info["rows"] == 6
    assert sorted(p.name for p in folder.glob("*.parquet")) == names
    assert read_records(folder, Trajectory) == [trajectory(i) for i in range(6)]
    assert all(finished(folder / name, "k").rows == 2 for name in names)


def test_dataset_writer_replaces_an_earlier_run_whole(tmp_path):
    folder = tmp_path / "dpm"
    with DatasetWriter(folder, Trajectory, "k", row_group_bytes=1, shard_bytes=1) as writer:
        writer.write(rows_table(1))
        writer.write(rows_table(1, 1))
        writer.close()
    with DatasetWriter(folder, Trajectory, "k2") as writer:
        writer.write(rows_table(1, 5))
        writer.close()
    assert [p.name for p in folder.iterdir() if p.suffix == ".parquet"] == ["train-00000-of-00001.parquet"]
    assert read_records(folder, Trajectory) == [trajectory(5)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dpm"]


def test_dataset_writer_failure_keeps_the_earlier_dataset(tmp_path):
    folder = tmp_path / "dpref"
    with DatasetWriter(folder, Trajectory, "k") as writer:
        writer.write(rows_table(2))
        writer.close()
    with pytest.raises(RuntimeError), DatasetWriter(folder, Trajectory, "k2") as writer:
        writer.write(rows_table(3))
        raise RuntimeError("judge endpoint down")
    assert read_records(folder, Trajectory) == [trajectory(0), trajectory(1)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dpref"]


def test_dataset_writer_rejects_records_of_another_schema(tmp_path):
    import pyarrow as pa

    with pytest.raises(ValueError, match="schema"), DatasetWriter(tmp_path / "d", Trajectory, "k") as writer:
        writer.write(pa.table({"id": ["x"]}))
