"""Shards: the unit of work and of resume.

A shard is one parquet file written atomically (temp file, fsync, rename) and then a completion marker beside it
(`<file>.done`, JSON with the shard's key, rows and sha256). A shard counts as finished only when its marker
exists, names the same key, and the file still has the recorded hash, so a new run of a round skips exactly the
shards whose inputs, model, sampling and code are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from reflectevo.schema import features_for

# Bump when a stage's output for the same inputs changes; part of every shard key.
CODE_VERSION = "1"

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


def marker_path(path: Path) -> Path:
    return path.with_name(path.name + ".done")


def write_shard(path: str | Path, records: list[BaseModel], model: type[BaseModel], key: str,
                meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write records as a parquet shard with the model's Features, then its marker; returns the marker.

    The marker holds the key, row count, file hash and `meta` (counts, timings), so a finished shard's
    manifest is read back from it alone.
    """
    from datasets import Dataset

    path = Path(path)
    marker_path(path).unlink(missing_ok=True)
    features = features_for(model)
    rows = [r.model_dump() for r in records]
    ds = Dataset.from_dict({name: [row[name] for row in rows] for name in features}, features=features)
    atomic_write_bytes(path, lambda tmp: ds.to_parquet(tmp))
    sha = file_sha256(path)
    info = {"key": key, "rows": len(records), "sha256": sha, "meta": meta or {}}
    atomic_write_text(marker_path(path), json.dumps(info))
    return info


def finished(path: str | Path, key: str) -> dict[str, Any] | None:
    """The marker of a finished shard with this key, or None if it must be (re)made."""
    path = Path(path)
    marker = marker_path(path)
    if not (path.exists() and marker.exists()):
        return None
    try:
        info = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return None
    if info.get("key") != key or info.get("sha256") != file_sha256(path):
        return None
    return info


def read_records(path: str | Path, model: type[T]) -> list[T]:
    import pyarrow.parquet as pq

    return [model.model_validate(row) for row in pq.read_table(path).to_pylist()]


def write_jsonl(path: str | Path, records: list[BaseModel]) -> None:
    atomic_write_text(Path(path), "".join(r.model_dump_json() + "\n" for r in records))


def read_jsonl(path: str | Path, model: type[T]) -> list[T]:
    return [model.model_validate_json(line) for line in Path(path).read_text().splitlines() if line.strip()]
