"""The production stack: `prefect server start` on PostgreSQL, a process work pool with two workers, and two
lineages run at once from the manual deployment, one flow run on each worker."""

from __future__ import annotations

import signal
from datetime import datetime

import pytest

from postgres import Postgres, pg_bin
from prefect_stack import Stack, flow_run_id, stop
from reflectevo.config import RoundConfig
from reflectevo.schema import Trajectory
from reflectevo.shards import read_records
from stages.lineage import read_lineage

pytestmark = pytest.mark.deployments

LINEAGES = ("alpha", "beta")


@pytest.fixture(scope="module")
def stack(tiny_model_path, tmp_path_factory):
    """PostgreSQL, a server on it, the deployments and two workers that take one flow run at a time each."""
    assert pg_bin("initdb"), "PostgreSQL is not installed: sudo apt-get install --no-install-recommends postgresql"
    db = Postgres()
    db.start()
    stack = Stack(tmp_path_factory.mktemp("prefect-home"), tmp_path_factory.mktemp("runs"))
    stack.env["PREFECT_API_DATABASE_CONNECTION_URL"] = db.url
    stack.db = db
    server = stack.start("server", "server")
    try:
        stack.wait_healthy()
        stack.run("pool")
        stack.run("deploy")
        for i in (1, 2):
            stack.start("worker-one", f"worker-{i}")
        yield stack
    finally:
        for process in reversed(stack.processes):
            if process is not server:
                stop(process)
        stop(server, signal.SIGTERM, grace=20)
        stack.http.close()
        db.stop()


@pytest.fixture(scope="module")
def two_lineages(stack):
    """Both rounds started back to back, then awaited."""
    ids = {name: flow_run_id(stack.run("start", NAME=name).stdout) for name in LINEAGES}
    return ids, {name: stack.wait_for_run(run_id, timeout=900) for name, run_id in ids.items()}


def when(run: dict, field: str) -> datetime:
    return datetime.fromisoformat(run[field])


def test_the_server_keeps_its_state_in_postgresql(stack, two_lineages):
    ids, _ = two_lineages
    listed = ", ".join(f"'{i}'" for i in ids.values())
    assert stack.db.sql(f"select count(*) from flow_run where id in ({listed}) and state_type = 'COMPLETED'") == "2"


def test_two_lineages_run_at_once_one_on_each_worker(stack, two_lineages):
    _, runs = two_lineages
    assert [r["state_name"] for r in runs.values()] == ["Completed", "Completed"]
    a, b = runs.values()
    assert when(a, "start_time") < when(b, "end_time") and when(b, "start_time") < when(a, "end_time")
    # A worker's log holds the output of the flow runs it started (both workers may try to take the same run;
    # the server lets one have it, so the run ids alone say nothing).
    logs = [(stack.logs / f"worker-{i}.log").read_text() for i in (1, 2)]
    started = [[name for name in LINEAGES if f"Beginning flow run 'evolve-{name}'" in log] for log in logs]
    assert sorted(started) == [["alpha"], ["beta"]]


def test_the_lineages_do_not_interfere(stack, two_lineages):
    """Each lineage records only its own round, in its own folder; with the same config both hold the same data."""
    trajectories = {}
    for name in LINEAGES:
        cfg = RoundConfig(run_dir=str(stack.runs), name=name)
        record = read_lineage(cfg)
        assert [e.round for e in record.history] == [1] and record.name == name
        shards = sorted(cfg.layout(1).trajectories.glob("shard-*.parquet"))
        trajectories[name] = [t for s in shards for t in read_records(s, Trajectory)]
    assert trajectories["alpha"] and trajectories["alpha"] == trajectories["beta"]
