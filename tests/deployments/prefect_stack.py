"""A Prefect server, work pool and worker on loopback for the deployment tests; every process stopped by PID.

The commands are shell strings run from the repository root with `bash -c`, exactly as the README lists
them (a test checks that the document holds each one); `$PORT`, `$RUNS`, `$NAME` and `$LIMIT` come from the
environment the test gives them.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# What the README tells a person to type, and what the tests type.
COMMANDS = {
    "server": 'prefect server start --host 127.0.0.1 --port "$PORT"',
    "pool": "prefect work-pool create reflectevo --type process",
    "deploy": "prefect --no-prompt deploy --all",
    "worker": "prefect worker start --pool reflectevo",
    # One flow run at a time per worker: several of these share a pool's runs out (the PostgreSQL stack).
    "worker-one": "prefect worker start --pool reflectevo --limit 1",
    "inspect": "prefect deployment inspect evolve/nightly",
    "start": ('prefect deployment run evolve/manual --param model=tiny --param engine=transformers --param limit=12 '
              '--param config=deployments/tiny.json --param run_dir="$RUNS" --param name="$NAME"'),
    "rerun": ('prefect deployment run evolve/manual --param run_dir="$RUNS" --param name="$NAME" --param round=1 '
              '--watch'),
    "resume": 'reflectevo resume "$RUNS/$NAME" --round 1',
    "chain": ('prefect deployment run evolve/manual --param run_dir="$RUNS" --param name="$NAME" --param rounds=2 '
              '--watch'),
    "delete-nightly": "prefect deployment delete evolve/nightly",
    "delete-manual": "prefect deployment delete evolve/manual",
    "serve": "python -m deployments.serve",
}
COMMANDS["round"] = COMMANDS["start"] + " --watch"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`, children first found, from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, pp in parents.items() if pp in frontier]
        found += children
        frontier = children
    return found


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> list[int]:
    """Send `sig` to `pid` and every process below it (the crash of a worker and the runs it started)."""
    pids = [pid, *descendants(pid)]
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass
    return pids


def stop(process: subprocess.Popen, first: int = signal.SIGINT, grace: float = 10) -> None:
    """`first`, then SIGKILL after `grace` seconds; what it started is killed with it."""
    if process.poll() is None:
        below = descendants(process.pid)
        process.send_signal(first)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            kill_tree(process.pid)
            process.wait()
        for p in below:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Stack:
    """Environment and processes of one Prefect server on loopback, with helpers over its REST API."""

    def __init__(self, home: Path, runs: Path):
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.home, self.runs, self.logs = home, runs, home / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "PORT": str(self.port), "RUNS": str(runs), "PREFECT_HOME": str(home),
            "PREFECT_API_URL": self.api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # The nightly schedule must not fire a full-size round in the middle of a test.
            "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
            "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_CLI_WRAP_LINES": "false", "COLUMNS": "200",
            "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
        }
        self.processes: list[subprocess.Popen] = []
        self.http = httpx.Client(base_url=self.api, timeout=30)

    def start(self, name: str, log: str, **env: str) -> subprocess.Popen:
        """A long-running command in the background, its output in logs/<log>.log."""
        out = open(self.logs / f"{log}.log", "ab")
        process = subprocess.Popen(["bash", "-c", f"exec {COMMANDS[name]}"], cwd=ROOT, env={**self.env, **env},
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    def run(self, name: str, timeout: float = 300, check: bool = True, **env: str) -> subprocess.CompletedProcess:
        """A command to completion; its output is kept in logs/<name>.log as well."""
        done = subprocess.run(["bash", "-c", COMMANDS[name]], cwd=ROOT, env={**self.env, **env}, timeout=timeout,
                              capture_output=True, text=True)
        (self.logs / f"{name}.log").open("a").write(f"$ {COMMANDS[name]}  {env}\n{done.stdout}{done.stderr}\n")
        if check and done.returncode != 0:
            raise AssertionError(f"{COMMANDS[name]} {env} exited {done.returncode}:\n{done.stdout[-3000:]}\n"
                                 f"{done.stderr[-3000:]}")
        return done

    def wait_healthy(self, timeout: float = 180) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            try:
                if self.http.get("/health").status_code == 200:
                    return time.monotonic() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"prefect server not healthy on port {self.port} after {timeout} s; see {self.logs}")

    # REST API helpers

    def post(self, path: str, body: dict) -> list | dict:
        response = self.http.post(path, json=body)
        response.raise_for_status()
        return response.json()

    def flow_run(self, run_id: str) -> dict:
        return self.http.get(f"/flow_runs/{run_id}").raise_for_status().json()

    def subflow_runs(self, run_id: str) -> list[dict]:
        """Every flow run below `run_id`, depth first."""
        found = []
        for child in self.post("/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [run_id]}}}):
            found += [child, *self.subflow_runs(child["id"])]
        return found

    def task_runs(self, flow_run_ids: list[str]) -> list[dict]:
        return self.post("/task_runs/filter", {"task_runs": {"flow_run_id": {"any_": flow_run_ids}}, "limit": 200})

    def logs_of(self, flow_run_ids: list[str]) -> list[dict]:
        logs, offset = [], 0
        while batch := self.post("/logs/filter", {"logs": {"flow_run_id": {"any_": flow_run_ids}},
                                                  "limit": 200, "offset": offset}):
            logs += batch
            offset += len(batch)
        return logs

    def artifact(self, key: str) -> dict:
        """The newest version of an artifact (`/artifacts/{key}/latest` answers with its collection's id)."""
        found = self.post("/artifacts/filter", {"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC",
                                                "limit": 1})
        assert found, f"no artifact {key!r}"
        return found[0]

    def wait_for_run(self, run_id: str, timeout: float = 300) -> dict:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            run = self.flow_run(run_id)
            if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                return run
            time.sleep(1)
        raise AssertionError(f"flow run {run_id} not finished after {timeout} s: {run['state_name']}")


def flow_run_id(output: str) -> str:
    """The flow run `prefect deployment run` created, from its output."""
    match = re.search(r"UUID:\s*([0-9a-f-]{36})", output)
    assert match, f"no flow run id in:\n{output}"
    return match.group(1)
