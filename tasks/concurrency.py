"""One engine or trainer at a time per machine: an OS file lock around the stages that load a model.

Two runs on one machine (a nightly round and a manual rerun, or a chained round that started early) would
otherwise load two engines, or an engine and a trainer, into the same GPU or CPU memory. Every stage that loads
a model holds one slot of `reflectevo-engine-<hostname>` while it runs.

A slot is an `flock` on `<lock dir>/<name>.<i>.lock`; the kernel releases it when its holder exits, however it
exits (SIGKILL and OOM kills included), so a dead run never blocks the next one and there is no lease to wait
out or free by hand. (It replaced a Prefect global concurrency limit whose lease outlived killed runs.)

* `REFLECTEVO_ENGINE_SLOTS=2`: two at once, where the hardware fits two.
* `REFLECTEVO_ENGINE_LIMIT`: another name, e.g. one shared by several names of one machine.
* `REFLECTEVO_LOCK_DIR`: where the lock files live (default `<model cache>/locks`); a folder on a shared file
  system whose flock works across machines makes the slot shared between them.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from models.loading import cache_dir

POLL_SECONDS = 1.0
REPORT_EVERY_SECONDS = 60.0


def engine_limit_name() -> str:
    return os.environ.get("REFLECTEVO_ENGINE_LIMIT") or f"reflectevo-engine-{socket.gethostname()}"


def lock_dir() -> Path:
    return Path(os.environ.get("REFLECTEVO_LOCK_DIR") or cache_dir() / "locks")


def slot_count() -> int:
    value = os.environ.get("REFLECTEVO_ENGINE_SLOTS", "1")
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"REFLECTEVO_ENGINE_SLOTS={value!r}: must be a whole number, 1 or more")
    return int(value)


def _try_slot(path: Path, stage: str) -> int | None:
    """An fd holding the lock on `path`, or None when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "stage": stage,
                              "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}).encode(), 0)
    return fd


def holders(name: str | None = None) -> list[str]:
    """What each slot file says about its last holder (informational: a free slot keeps its last note)."""
    folder, name = lock_dir(), name or engine_limit_name()
    return [p.read_text(errors="replace") for p in sorted(folder.glob(f"{name}.*.lock")) if p.stat().st_size]


@contextmanager
def engine_slot(stage: str, log=None) -> Iterator[None]:
    """Hold one of this machine's engine slots for the duration of a stage that loads a model or trains."""
    if log is None:
        from prefect import get_run_logger

        log = get_run_logger()
    name = engine_limit_name()
    folder = lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.{i}.lock" for i in range(slot_count())]
    log.info("%s waits for engine slot %r", stage, name)
    started = last_report = time.monotonic()
    fd = None
    while fd is None:
        for path in paths:
            if (fd := _try_slot(path, stage)) is not None:
                break
        else:
            time.sleep(POLL_SECONDS)
            if time.monotonic() - last_report >= REPORT_EVERY_SECONDS:
                last_report = time.monotonic()
                log.info("%s still waits for engine slot %r after %.0f s; held by %s", stage, name,
                         last_report - started, "; ".join(holders(name)) or "?")
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
