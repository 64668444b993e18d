"""Rounds as deployments, end to end: a real `prefect server start`, a process work pool, a worker, the tiny model.

One server for the module. The manual deployment runs a round; a worker killed (SIGKILL) in the middle of a
round's generation is restarted and the round rerun, which must reuse the shards finished before the kill
(Cached, files untouched) and end with the same trajectories as the uninterrupted round; a round chains the next
one through run_deployment; the UI shows the round and its artifacts in a headless Chromium.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

import pytest

from prefect_stack import COMMANDS, ROOT, Stack, flow_run_id, kill_tree, stop

pytestmark = pytest.mark.deployments

SHARDS = 9  # limit 12 per task, 3 held out, shard_size 2 in deployments/tiny.json: 18 pool problems
KINDS = ("metrics", "curation", "summary", "accuracy-plot", "generation")


@pytest.fixture(scope="module")
def stack(tiny_model_path, tmp_path_factory):
    """Server, work pool, both deployments and a worker; stopped by PID (worker first) at the end."""
    stack = Stack(tmp_path_factory.mktemp("prefect-home"), tmp_path_factory.mktemp("runs"))
    server = stack.start("server", "server")
    worker = None
    try:
        stack.wait_healthy()
        stack.run("pool")
        stack.run("deploy")
        worker = stack.start("worker", "worker")
        stack.worker = worker
        yield stack
    finally:
        for process in reversed(stack.processes):
            if process is not server:
                stop(process)
        stop(server, signal.SIGTERM, grace=20)
        stack.http.close()


def round_dir(stack: Stack, name: str, r: int = 1) -> Path:
    return stack.runs / name / f"round-{r}"


def rows(stack: Stack, name: str, dataset: str = "trajectories") -> list[dict]:
    import pyarrow.parquet as pq

    folder = round_dir(stack, name)
    files = sorted((folder / "trajectories").glob("shard-*.parquet")) if dataset == "trajectories" else \
        [folder / "datasets" / dataset / "train-00000-of-00001.parquet"]
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def round_run(stack: Stack, evolve_run_id: str) -> dict:
    return next(r for r in stack.subflow_runs(evolve_run_id) if r["name"].startswith("round-"))


def shard_states(stack: Stack, evolve_run_id: str) -> dict[int, str]:
    runs = [r["id"] for r in stack.subflow_runs(evolve_run_id)]
    return {int(t["name"].rsplit("-", 1)[1]): t["state_name"] for t in stack.task_runs(runs)
            if t["name"].startswith("generate-r1-shard-")}


@pytest.fixture(scope="module")
def clean(stack):
    """One uninterrupted round of lineage `clean` through the manual deployment."""
    start = time.monotonic()
    done = stack.run("round", NAME="clean")
    return {"run_id": flow_run_id(done.stdout), "seconds": time.monotonic() - start}


@pytest.fixture(scope="module")
def crash(stack, clean):
    """Lineage `crash`: the same round, its worker killed mid-generation, then the round run again."""
    trajectories = round_dir(stack, "crash") / "trajectories"
    killed_run = flow_run_id(stack.run("start", NAME="crash").stdout)
    deadline = time.monotonic() + 240
    while len(list(trajectories.glob("*.done"))) < 2:  # at least two shards done, so one is running now
        assert time.monotonic() < deadline, "the crash run never finished two shards"
        time.sleep(0.05)
    killed = kill_tree(stack.worker.pid)
    stack.worker.wait()
    time.sleep(0.5)
    # Shards the killed run reported Completed: their results were persisted, so the rerun gets them as Cached. A
    # shard killed between writing its marker and reporting (a race a busy machine widens) is reused from disk too,
    # but Prefect runs its task again to find that out (Completed, not Cached).
    reported = {s for s, state in shard_states(stack, killed_run).items() if state == "Completed"}
    markers = {int(p.name.split("-")[1].split(".")[0]): (p.stat().st_mtime_ns, p.read_text())
               for p in trajectories.glob("*.done")}
    outputs = {p.name: p.stat().st_mtime_ns for p in trajectories.glob("*.parquet")}
    assert 0 < len(markers) < SHARDS, f"kill came too late: {len(markers)} of {SHARDS} shards finished"

    stack.worker = stack.start("worker", "worker")
    # The killed run's engine slot is an flock the kernel freed with it: the rerun needs no operator step.
    start = time.monotonic()
    rerun = flow_run_id(stack.run("rerun", NAME="crash").stdout)
    return {"killed_run": killed_run, "killed_pids": killed, "markers": markers, "outputs": outputs,
            "reported": reported, "rerun": rerun, "seconds": time.monotonic() - start}


def test_nightly_deployment_reads_back_with_its_cron_schedule(stack):
    deployment = stack.http.get("/deployments/name/evolve/nightly").raise_for_status().json()
    (schedule,) = deployment["schedules"]
    assert schedule["schedule"]["cron"] == "0 2 * * *" and schedule["schedule"]["timezone"] == "UTC"
    assert schedule["active"]
    assert deployment["global_concurrency_limit"]["limit"] == 1
    assert deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    assert deployment["work_pool_name"] == "reflectevo"
    assert deployment["parameters"]["name"] == "nightly" and "round" not in deployment["parameters"]
    assert "0 2 * * *" in stack.run("inspect").stdout


def test_manual_run_completes_a_round_with_readable_artifacts_and_logs(stack, clean):
    evolve_run = stack.flow_run(clean["run_id"])
    assert evolve_run["state_name"] == "Completed" and evolve_run["deployment_id"]
    round_ = round_run(stack, clean["run_id"])
    assert round_["name"] == "round-1" and round_["state_name"] == "Completed"

    artifacts = {kind: stack.artifact(f"reflectevo-clean-round-1-{kind}") for kind in KINDS}
    metrics = {row["task"]: row for row in json.loads(artifacts["metrics"]["data"])}
    assert {"choice", "math", "all"} <= set(metrics) and {"acc@t1", "acc@t2", "difference"} <= set(metrics["all"])
    steps = [row["step"] for row in json.loads(artifacts["curation"]["data"])]
    assert steps[0] == "filter: empty_reflection" and "D+: second trial correct" in steps
    assert "Round 1 of `clean`" in artifacts["summary"]["data"]
    assert "data:image/png;base64," in artifacts["summary"]["data"]
    assert "Dataset card" in artifacts["summary"]["data"]
    assert (round_dir(stack, "clean") / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "accuracy.png" in artifacts["accuracy-plot"]["data"]
    assert artifacts["generation"]["type"] == "progress" and float(artifacts["generation"]["data"]) == 100.0
    assert all(a["flow_run_id"] for a in artifacts.values())

    runs = [clean["run_id"], *[r["id"] for r in stack.subflow_runs(clean["run_id"])]]
    loggers = {log["name"] for log in stack.logs_of(runs)}
    assert "transformers.trainer" in loggers, sorted(loggers)  # the trainer's own log lines
    assert any(n.startswith("transformers.") and n != "transformers.trainer" for n in loggers)  # the engine's
    assert (stack.runs / "clean" / "lineage.json").exists()


def test_rerun_after_a_killed_worker_reuses_the_finished_shards(stack, clean, crash):
    rerun = stack.flow_run(crash["rerun"])
    assert rerun["state_name"] == "Completed"
    states = shard_states(stack, crash["rerun"])
    finished, reported = set(crash["markers"]), crash["reported"]
    assert len(states) == SHARDS and reported <= finished and reported
    assert {s for s, state in states.items() if state == "Cached"} == reported, (states, reported)
    assert all(states[s] == "Completed" for s in set(states) - reported), states
    trajectories = round_dir(stack, "crash") / "trajectories"
    for shard, (mtime, marker) in crash["markers"].items():
        path = trajectories / f"shard-{shard:05d}.parquet.done"
        assert path.stat().st_mtime_ns == mtime and path.read_text() == marker
        assert (trajectories / f"shard-{shard:05d}.parquet").stat().st_mtime_ns == crash["outputs"][path.stem]
    assert rows(stack, "crash") == rows(stack, "clean")
    assert rows(stack, "crash", "dplus") == rows(stack, "clean", "dplus")
    print(f"\nkilled {len(crash['killed_pids'])} processes with {len(finished)} of {SHARDS} shards finished "
          f"({len(reported)} reported); rerun: {len(reported)} Cached, {SHARDS - len(finished)} generated, "
          f"{crash['seconds']:.0f} s")


def test_resume_command_reruns_the_round_from_every_finished_shard(stack, crash):
    before = {p.name: p.stat().st_mtime_ns for p in (round_dir(stack, "crash") / "trajectories").glob("*")}
    done = stack.run("resume", NAME="crash")
    assert "round 1" in done.stdout and "Acc@t1" in done.stdout
    assert "9 of 9 shards are complete on disk" in done.stdout + done.stderr
    after = {p.name: p.stat().st_mtime_ns for p in (round_dir(stack, "crash") / "trajectories").glob("*")}
    assert after == before


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="chromium is not installed (scripts/setup.sh installs it as root: apt-get install chromium)")
def test_the_ui_shows_the_round_and_its_artifacts(stack, clean, tmp_path):
    from cdp_browser import Browser

    round_ = round_run(stack, clean["run_id"])
    summary = stack.artifact("reflectevo-clean-round-1-summary")
    ui = f"http://127.0.0.1:{stack.port}"
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    browser = Browser(profile, height=1100)
    try:
        browser.open(f"{ui}/runs/flow-run/{round_['id']}")
        browser.wait_for_text("round-1", "Completed", "evolution-round", "evolve-clean", "Artifacts")  # + parent
        browser.click_tab("Artifacts")
        browser.wait_for_text(*(f"reflectevo-clean-round-1-{k}" for k in ("metrics", "curation", "summary")))
        shot = browser.screenshot(tmp_path / "ui-round.png")
        browser.open(f"{ui}/artifacts/artifact/{summary['id']}")
        browser.wait_for_text("Round 1 of", "clean", "Acc@t2", "Dataset card")
        browser.screenshot(tmp_path / "ui-summary.png")
    finally:
        browser.close()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_served_deployments_chain_a_round_to_the_next_through_run_deployment(stack, clean):
    """Last, as it replaces the work-pool deployments with the ones `python -m deployments.serve` serves.

    Lineage `clean` continues from its lineage record: round 2 runs, then schedules round 3 on the same
    deployment as a top-level run with the lineage's idempotency key.
    """
    from reflectevo.config import RoundConfig
    from stages.lineage import lineage_id, read_lineage

    stop(stack.worker)
    stack.run("delete-nightly")
    stack.run("delete-manual")
    serve = stack.start("serve", "serve")
    try:
        deadline = time.monotonic() + 120
        while (manual := stack.http.get("/deployments/name/evolve/manual")).status_code != 200 or \
                manual.json()["status"] != "READY":
            assert serve.poll() is None, (stack.logs / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "serve never registered its deployments"
            time.sleep(0.5)
        nightly = stack.http.get("/deployments/name/evolve/nightly").raise_for_status().json()
        assert nightly["schedules"][0]["schedule"]["cron"] == "0 2 * * *"
        assert nightly["global_concurrency_limit"]["limit"] == 1

        first = flow_run_id(stack.run("chain", NAME="clean").stdout)
        deadline = time.monotonic() + 600  # two tiny rounds, each evaluated with and without reflection
        while not (chained := stack.post("/flow_runs/filter",
                                          {"flow_runs": {"name": {"any_": ["evolve-clean-r3"]}}})):
            assert time.monotonic() < deadline, "round 3 was never scheduled"
            time.sleep(1)
        chained = stack.wait_for_run(chained[0]["id"])
    finally:
        stop(serve, signal.SIGTERM, grace=20)
    lineage = RoundConfig(run_dir=str(stack.runs), name="clean")
    assert chained["state_name"] == "Completed"
    assert chained["idempotency_key"] == f"{lineage_id(lineage)}-round-3"
    assert chained["parent_task_run_id"] is None  # a top-level run, not a child of round 2's run
    assert chained["parameters"]["round"] == 3 and chained["parameters"]["rounds"] == 1
    assert chained["deployment_id"] == stack.flow_run(first)["deployment_id"] == manual.json()["id"]
    record = read_lineage(lineage)
    assert [e.round for e in record.history] == [1, 2, 3] and record.latest.round == 3
    assert record.latest.adapter == str(stack.runs / "clean" / "round-3" / "adapter")


def test_the_runbook_lists_every_command_these_tests_run():
    runbook = (ROOT / "README.md").read_text()
    assert [name for name, command in COMMANDS.items() if command not in runbook] == []
