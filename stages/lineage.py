"""A lineage: the rounds of one run folder, each generating with the adapter the round before it trained.

`<run_dir>/<name>/lineage.json` records where the lineage stands, so a run with no parameters (the nightly
deployment) continues it: the latest round, the adapter the next round starts from, its metrics, and one entry
per finished round. The stop conditions of round chaining are pure functions of this record.

The round's manifest.json is the commit point of a round; lineage.json is derived from the manifests
(`reconcile`), so a crash between the two loses nothing: the next run records the round first. One run at a
time holds a lineage (`lineage_lock`, an OS file lock the kernel frees when its holder dies).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, Field

from reflectevo.config import RoundConfig, load_config
from reflectevo.errors import ConfigError, RefusedError
from reflectevo.schema import RoundManifest
from reflectevo.shards import atomic_write_text
from stages.prepare import finished_rounds, read_manifest

LINEAGE_FILE = "lineage.json"
LOCK_FILE = ".lineage.lock"
# The held-out number "gain" means: Acc@t2 over all tasks, the accuracy after one reflection.
GAIN_TASK, GAIN_METRIC = "all", "acc@t2"


class RoundEntry(BaseModel):
    round: int
    adapter: str | None = Field(description="The adapter the next round starts from: this round's, or the one it "
                                            "inherited when it trained none.")
    adapter_sha256: str | None = None
    trained: bool = Field(description="Whether this round trained an adapter.")
    dplus_rows: int = Field(description="Rows of D+, the verified fixes the round learned from.")
    metrics: dict[str, dict[str, float | None]] = Field(
        default_factory=dict, description="Held-out metrics per task (None: undefined, e.g. a stderr of one sample; "
                                          "a NaN is written to JSON as null).")
    config: str = Field(description="The round's config.json, relative to the run folder.")
    flow_run_id: str | None = Field(default=None, description="The Prefect flow run of the round, if any.")
    finished_at: str


class Lineage(BaseModel):
    name: str
    run_path: str
    latest: RoundEntry | None = Field(default=None, description="The highest finished round.")
    history: list[RoundEntry] = Field(default_factory=list, description="Finished rounds, ascending.")
    stopped: str | None = Field(default=None, description="Why the last run stopped chaining rounds, if it did.")


class StopPolicy(BaseModel):
    """When a lineage stops scheduling rounds. A round without D+ always stops it: nothing new was learned."""

    max_rounds: int | None = Field(default=None, ge=1, description="No round number above this one runs.")
    patience: int | None = Field(default=None, ge=1,
                                 description=f"Stop after this many rounds without a held-out {GAIN_METRIC} gain.")


def lineage_path(cfg: RoundConfig) -> Path:
    return cfg.run_path() / LINEAGE_FILE


def read_lineage(cfg: RoundConfig) -> Lineage | None:
    path = lineage_path(cfg)
    return Lineage.model_validate_json(path.read_text()) if path.exists() else None


def write_lineage(cfg: RoundConfig, lineage: Lineage) -> None:
    atomic_write_text(lineage_path(cfg), lineage.model_dump_json(indent=1))


def evolve_overrides(model: str | None = None, engine: str | None = None, tasks: list[str] | None = None,
                     limit: int | None = None, run_dir: str | None = None, name: str | None = None,
                     runner: str | None = None) -> dict:
    """The config fields the `evolve` flags and flow parameters set (None: not set); checked like file fields."""
    return {"model": model, "tasks": tasks, "limit": limit, "run_dir": run_dir, "name": name, "runner": runner,
            "engine": {"name": engine} if engine else None}


def check_rounds(rounds: int, round_: int | None) -> None:
    if rounds < 1:
        raise ConfigError(f"--rounds {rounds}: must be 1 or more (the number of rounds to run)")
    if round_ is not None and round_ < 1:
        raise ConfigError(f"--round {round_}: rounds are numbered from 1")


def lineage_config(config: str | None, overrides: dict, round_: int | None = None) -> RoundConfig:
    """The round config of a run: `config` and `overrides`; without `config`, the config the lineage ran with.

    That is round `round_`'s own config.json when that round has started before (a rerun repeats it exactly),
    else the lineage's latest round's; so a run given only a run folder (the nightly deployment) continues
    with the lineage's settings. Flags and parameters in `overrides` win either way.
    """
    cfg = load_config(config, overrides)
    if config is not None:
        return cfg
    here = {"run_dir": cfg.run_dir, "name": cfg.name}  # where the lineage was found, whatever its files say
    own = cfg.layout(round_).config if round_ is not None else None
    lineage = read_lineage(cfg)
    if own is not None and own.exists():
        return load_config(str(own), {**overrides, **here})
    if lineage and lineage.latest:
        return load_config(str(cfg.run_path() / lineage.latest.config), {**overrides, **here})
    return cfg


def next_round(cfg: RoundConfig) -> int:
    """The round after the latest finished one: the lineage record's, or a newer manifest's (a crash between
    writing a round's manifest and its lineage entry, or a run folder older than lineage.json)."""
    lineage = read_lineage(cfg)
    recorded = lineage.latest.round if lineage and lineage.latest else 0
    return max(recorded, (finished_rounds(cfg) or [0])[-1]) + 1


def reconcile(cfg: RoundConfig) -> list[int]:
    """Record every finished round (one with a manifest) that the lineage record lacks; returns those rounds.

    Idempotent, so it can run at the start of every run: whatever point a crash hit, the record catches up.
    """
    lineage = read_lineage(cfg)
    known = {e.round for e in lineage.history} if lineage else set()
    missing = [r for r in finished_rounds(cfg) if r not in known]
    for r in missing:
        record_round(cfg, read_manifest(cfg, r), None)
    return missing


_held: dict[str, int] = {}  # lock files this process holds, with their nesting depth


@contextmanager
def lineage_lock(cfg: RoundConfig) -> Iterator[None]:
    """Hold the lineage for this process, or refuse with who holds it.

    An OS lock (flock) on `<run>/.lineage.lock`: the kernel frees it when the holder exits or is killed, so a
    dead run never blocks the next one. Reentrant within a process (the CLI takes it, then the flow it runs).
    Shared run folders on NFS need working flock there.
    """
    path = cfg.run_path() / LOCK_FILE
    key = str(path.resolve())
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
            raise RefusedError(f"lineage {cfg.run_path()} is already being run ({holder}); wait for that run to end "
                               "(its lock is freed when it exits), or give this run another --name") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}).encode(), 0)
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def record_round(cfg: RoundConfig, manifest: RoundManifest, flow_run_id: str | None) -> Lineage:
    """Add (or replace, for a rerun) the round's entry and write the record."""
    trained = bool(manifest.adapter and manifest.adapter.path)
    entry = RoundEntry(
        round=manifest.round,
        adapter=manifest.adapter.path if trained else manifest.model.adapter,
        adapter_sha256=manifest.adapter.sha256 if trained else manifest.model.adapter_sha256,
        trained=trained, dplus_rows=manifest.datasets["dplus"].rows if "dplus" in manifest.datasets else 0,
        metrics=manifest.metrics, config=str(cfg.layout(manifest.round).relative_config),
        flow_run_id=flow_run_id, finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    lineage = read_lineage(cfg) or Lineage(name=cfg.name, run_path=str(cfg.run_path().resolve()))
    history = sorted([e for e in lineage.history if e.round != entry.round] + [entry], key=lambda e: e.round)
    lineage = lineage.model_copy(update={"history": history, "latest": history[-1], "stopped": None})
    write_lineage(cfg, lineage)
    return lineage


def mark_stopped(cfg: RoundConfig, reason: str) -> None:
    lineage = read_lineage(cfg) or Lineage(name=cfg.name, run_path=str(cfg.run_path().resolve()))
    write_lineage(cfg, lineage.model_copy(update={"stopped": reason}))


def gain(entry: RoundEntry) -> float | None:
    return entry.metrics.get(GAIN_TASK, {}).get(GAIN_METRIC)


def over_limit(policy: StopPolicy, round_: int) -> str | None:
    """Why round `round_` must not run at all, or None."""
    if policy.max_rounds is not None and round_ > policy.max_rounds:
        return f"round {round_} is past max_rounds={policy.max_rounds}"
    return None


def stop_reason(lineage: Lineage, policy: StopPolicy, round_: int) -> str | None:
    """Why no round should follow round `round_`, or None to go on."""
    entries = [e for e in lineage.history if e.round <= round_]
    if not entries or entries[-1].round != round_:
        raise ValueError(f"round {round_} is not in the lineage record {lineage.run_path}/{LINEAGE_FILE}; "
                         "record it (record_round) before asking whether to go on")
    if policy.max_rounds is not None and round_ >= policy.max_rounds:
        return f"reached max_rounds={policy.max_rounds}"
    if entries[-1].dplus_rows == 0:
        return f"round {round_} produced no D+ data (no reflection fixed a wrong answer)"
    if policy.patience is not None and len(entries) > policy.patience:
        values = [gain(e) for e in entries]
        earlier, recent = values[: -policy.patience], values[-policy.patience :]
        best_before = max((v for v in earlier if v is not None), default=None)
        if best_before is not None and all(v is None or v <= best_before for v in recent):
            return (f"no held-out {GAIN_METRIC} gain for {policy.patience} round(s): best before was "
                    f"{best_before:.3f}, since then {', '.join('-' if v is None else f'{v:.3f}' for v in recent)}")
    return None


def slug(text: str) -> str:
    """Lowercase letters, digits and dashes only: what Prefect accepts in artifact keys."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-") or "run"


def lineage_id(cfg: RoundConfig) -> str:
    """A name for the lineage that stays the same across runs and machines sharing the folder."""
    digest = hashlib.sha256(str(cfg.run_path().resolve()).encode()).hexdigest()[:8]
    return f"reflectevo-{slug(cfg.name)}-{digest}"


def artifact_key(cfg: RoundConfig, round_: int | None, kind: str) -> str:
    return slug(f"reflectevo-{cfg.name}" + (f"-round-{round_}" if round_ is not None else "") + f"-{kind}")


def result_storage_for(cfg: RoundConfig, value: str | None) -> str:
    """Where Prefect keeps shard results: a directory, or a storage block slug `<block-type>/<block-name>`.

    Default: `<run_dir>/<name>/prefect-results`, which every worker on the machine that shares the run folder
    sees. An absolute path, or one starting with `.` or `~`, is a directory; anything else names a block.
    """
    if value is None:
        return str((cfg.run_path() / "prefect-results").resolve())
    if value.startswith(("/", ".", "~")):
        return str(Path(value).expanduser().resolve())
    if not re.fullmatch(r"[a-z0-9-]+/[a-z0-9-]+", value):
        raise ValueError(f"result_storage={value!r} is neither a directory (absolute, or starting with '.' or '~') "
                         "nor a block slug like 'local-file-system/reflectevo-results'")
    return value
