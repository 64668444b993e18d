"""One engine or trainer at a time per machine: a Prefect global concurrency limit around those stages.

Two runs on one machine (a nightly round and a manual rerun, or a chained round that started early) would
otherwise load two engines, or an engine and a trainer, into the same GPU or CPU memory. Every stage that
loads a model holds one slot of `reflectevo-engine-<hostname>` (limit 1) while it runs; the limit is created
on first use, so a fresh server, and the test harness, need no setup step. Set `REFLECTEVO_ENGINE_LIMIT` to
share one limit between machines, or to give one machine several names. Raise the limit
(`prefect gcl update <name> --limit 2`) where the hardware fits two.

A slot is a lease the holder renews; a process that dies without releasing it (SIGKILL, power loss) holds it
until the lease expires (`LEASE_SECONDS`). Free it at once with `prefect gcl update <name> --active-slots 0`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

LEASE_SECONDS = 300  # Prefect's default; the server accepts 60 at least


def engine_limit_name() -> str:
    return os.environ.get("REFLECTEVO_ENGINE_LIMIT") or f"reflectevo-engine-{socket.gethostname()}"


def ensure_limit(name: str) -> None:
    """Create the limit with one slot unless it exists (an existing limit keeps its size)."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
            except ObjectAlreadyExists:  # another run created it in between
                pass


@contextmanager
def engine_slot(stage: str) -> Iterator[None]:
    """Hold this machine's engine slot for the duration of a stage that loads a model or trains."""
    name = engine_limit_name()
    ensure_limit(name)
    get_run_logger().info("%s waits for engine slot %r", stage, name)
    # A failed lease renewal (server restart, network blip) must not kill hours of training: keep running.
    with concurrency(name, occupy=1, lease_duration=LEASE_SECONDS, strict=True,
                     raise_on_lease_renewal_failure=False):
        yield
