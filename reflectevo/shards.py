"""Shards: the unit of work and of resume.

A shard is one parquet file written atomically (temp file, fsync, rename) and then a completion marker beside it
(`<file>.done`, JSON with the shard's key, rows and sha256). A shard counts as finished only when its marker
exists, names the same key, and the file still has the recorded hash, so a new run of a round skips exactly the
shards whose inputs, model, sampling and code are unchanged.

A dataset too large for memory is a folder of such shards, `train-0000k-of-0000n.parquet` (the Hub's naming, so
`datasets` reads the folder as one train split), written by `DatasetWriter` a batch of records at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from reflectevo.schema import features_for

# Bump when a stage's output for the same inputs changes; part of every shard key.
CODE_VERSION = "2"

T = TypeVar("T", bound=BaseModel)


def content_key(**parts: Any) -> str:
    """sha256 of the canonical JSON of everything that determines an output."""
    blob = json.dumps({"code_version": CODE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: Path, write) -> None:
    """Call `write(tmp_path)`, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


class ShardMarker(BaseModel):
    """A finished shard's `.done` marker: what made it (key), what it holds (rows, the file's sha256), and the
    stage's counts and timings (meta), so a finished shard's manifest is read back from the marker alone."""

    model_config = ConfigDict(extra="forbid")

    key: str
    rows: int
    sha256: str
    meta: dict[str, Any] = {}


def marker_path(path: Path) -> Path:
    return path.with_name(path.name + ".done")


def _mark(path: Path, key: str, rows: int, meta: dict[str, Any] | None) -> ShardMarker:
    marker = ShardMarker(key=key, rows=rows, sha256=file_sha256(path), meta=meta or {})
    atomic_write_text(marker_path(path), marker.model_dump_json())
    return marker


def write_shard(path: str | Path, records: list[BaseModel], model: type[BaseModel], key: str,
                meta: dict[str, Any] | None = None) -> ShardMarker:
    """Write records as a parquet shard with the model's Features, then its marker; returns the marker."""
    from datasets import Dataset

    path = Path(path)
    marker_path(path).unlink(missing_ok=True)
    features = features_for(model)
    rows = [r.model_dump() for r in records]
    ds = Dataset.from_dict({name: [row[name] for row in rows] for name in features}, features=features)
    atomic_write_bytes(path, lambda tmp: ds.to_parquet(tmp))
    return _mark(path, key, len(records), meta)


def finished(path: str | Path, key: str) -> ShardMarker | None:
    """The marker of a finished shard with this key, or None if it must be (re)made."""
    path = Path(path)
    marker = marker_path(path)
    if not (path.exists() and marker.exists()):
        return None
    try:
        info = ShardMarker.model_validate_json(marker.read_text())
    except ValidationError:  # a torn or foreign marker: the shard is made again
        return None
    if info.key != key or info.sha256 != file_sha256(path):
        return None
    return info


def parquet_files(path: str | Path) -> list[Path]:
    """The parquet files of a shard (the file itself) or of a dataset folder (its shards, in order)."""
    path = Path(path)
    return sorted(path.glob("*.parquet")) if path.is_dir() else [path]


def read_records(path: str | Path, model: type[T]) -> list[T]:
    """Every record of a parquet shard, or of a dataset folder's shards in order."""
    import pyarrow.parquet as pq

    return [model.model_validate(row) for f in parquet_files(path) for row in pq.read_table(f).to_pylist()]


class DatasetWriter:
    """Writes one dataset as a folder of parquet shards, a batch of record rows at a time.

    Records are buffered up to `row_group_bytes` (Arrow size) and written as one row group; a shard closes at
    `shard_bytes`, so memory holds one row group, never the dataset. Shards are staged in a hidden folder beside
    `folder`, each fsynced and given its marker, then named `train-0000k-of-0000n.parquet` once n is known, and
    the staged folder replaces `folder` by rename: a reader never sees a half-written dataset or shards of an
    earlier run. A dataset without rows is one shard with the schema and no row group, which pyarrow, pandas and
    `datasets` (streaming) read as empty with the right columns; a 0-row row group would not load at all.
    """

    def __init__(self, folder: str | Path, model: type[BaseModel], key: str, row_group_bytes: int = 32 << 20,
                 shard_bytes: int = 256 << 20):
        self.folder, self.key = Path(folder), key
        self.schema = features_for(model).arrow_schema
        self.row_group_bytes, self.shard_bytes = row_group_bytes, shard_bytes
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        self.stage = Path(tempfile.mkdtemp(dir=self.folder.parent, prefix=f".{self.folder.name}.", suffix=".tmp"))
        self.stage.chmod(0o755)  # mkdtemp's 0700 would hide the dataset from a server running as another user
        self.buffer: list[Any] = []
        self.buffered = 0
        self.writer = None
        self.shard_written = 0
        self.shards: list[dict[str, Any]] = []

    def write(self, table) -> None:
        """Append records: a pyarrow Table in the model's schema."""
        if not table.num_rows:
            return
        if table.schema != self.schema:
            raise ValueError(f"{self.folder}: records with schema {table.schema} for a dataset of {self.schema}")
        self.buffer.append(table)
        self.buffered += table.nbytes
        if self.buffered >= self.row_group_bytes:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.writer is None:
            path = self.stage / f"part-{len(self.shards):05d}.parquet"
            self.writer = pq.ParquetWriter(path, self.schema)
            self.shards.append({"path": path, "rows": 0})
        if self.buffer:
            table = pa.concat_tables(self.buffer)
            self.writer.write_table(table, row_group_size=table.num_rows)
            self.shards[-1]["rows"] += table.num_rows
            self.shard_written += self.buffered
            self.buffer, self.buffered = [], 0
        if self.shard_written >= self.shard_bytes:
            self._close_shard()

    def _close_shard(self) -> None:
        self.writer.close()
        self.writer, self.shard_written = None, 0

    def close(self, meta: dict[str, Any] | None = None) -> dict[str, Any]:
        """Finish the dataset; returns its rows, a sha256 over its shards' hashes and the shard file names."""
        try:
            if self.buffer or not self.shards:
                self._flush()
            if self.writer is not None:
                self._close_shard()
            n, names = len(self.shards), []
            for k, shard in enumerate(self.shards):
                name = f"train-{k:05d}-of-{n:05d}.parquet"
                with open(shard["path"], "rb+") as f:
                    os.fsync(f.fileno())
                os.replace(shard["path"], self.stage / name)
                names.append((name, _mark(self.stage / name, self.key, shard["rows"], meta).sha256))
            old = self.folder.with_name(self.stage.name + ".old")
            if self.folder.exists():
                os.replace(self.folder, old)
            os.replace(self.stage, self.folder)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            if self.writer is not None:
                self.writer.close()
            shutil.rmtree(self.stage, ignore_errors=True)
        sha = hashlib.sha256(json.dumps(names).encode()).hexdigest()
        return {"rows": sum(s["rows"] for s in self.shards), "sha256": sha, "files": [name for name, _ in names]}

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """On an error, drop everything staged: `folder` is left as it was."""
        if exc_type is not None:
            if self.writer is not None:
                self.writer.close()
            shutil.rmtree(self.stage, ignore_errors=True)


def write_jsonl(path: str | Path, records: list[BaseModel]) -> None:
    atomic_write_text(Path(path), "".join(r.model_dump_json() + "\n" for r in records))


def read_jsonl(path: str | Path, model: type[T]) -> list[T]:
    return [model.model_validate_json(line) for line in Path(path).read_text().splitlines() if line.strip()]
