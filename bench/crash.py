"""kill -9 at six points of a tiny round, then rerun the same command: does it finish without help, with the same
data as an uninterrupted run, without redoing a finished shard, and without leftovers?

    .venv/bin/python bench/crash.py            # ~15-25 min on a busy 2-core machine; prints one line per point

Points (each detected from the files the round writes, then the whole process group gets SIGKILL):
  generation      the first trajectory shard is being written (trajectories/ exists, no marker yet)
  between-shards  right after the first shard's .done marker appears
  curation        datasets/ appeared (curation is writing D+ / D± / Dpref)
  training        the adapter's temp folder (.adapter-*) appeared
  evaluation      eval/ appeared
  manifest-lineage  manifest.json written, lineage.json not: this window is microseconds wide, so it is made
                  exactly instead (an uninterrupted run, then its lineage.json removed: the state such a kill leaves)

All runs share one Prefect server started here (PREFECT_API_URL), so no run waits for a temporary one, and run
the code of a git worktree of HEAD, so edits made to the working tree meanwhile cannot change the data between
the reference and the reruns.
Per point it prints: rerun exit code and seconds, datasets identical to the reference row for row, finished shards
reused (markers untouched), leftovers, eval result sets, and the round in lineage.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).parents[1]
CONFIG = {"shard_size": 2, "generate": {"fewshot": 0, "reflections": 3, "trial_max_tokens": 24, "reflection_max_tokens": 16},
          "evaluate": {"trial_max_tokens": 24, "reflection_max_tokens": 16}, "train": {"max_steps": 2, "batch_size": 2}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    server = subprocess.Popen([str(ROOT / ".venv/bin/prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                               str(port)], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            return server, url
        except OSError:
            time.sleep(1)
    raise SystemExit(f"prefect server did not start; see {log}")


def evolve_cmd(runs: Path, name: str, config: Path, limit: int) -> list[str]:
    """`reflectevo evolve`, importing the code of the current directory (the worktree) first."""
    return [sys.executable, "-c", "from cli.app import app; app()", "evolve", "--model", "tiny", "--engine",
            "transformers", "--limit", str(limit), "--run-dir", str(runs), "--name", name, "--config", str(config)]


def first_difference(a: list[str], b: list[str]) -> str:
    """The first differing field of the first differing row, for a report line."""
    for x, y in zip(a, b):
        if x != y:
            ra, rb = json.loads(x), json.loads(y)
            for k in ra:
                if ra.get(k) != rb.get(k):
                    return f"{k}: {str(ra[k])[:120]!r} vs {str(rb.get(k))[:120]!r}"
    return f"{len(a)} vs {len(b)} rows"


def _dump(row: dict, round_dir: Path) -> str:
    """A row as canonical JSON, its own run folder's path replaced, so two run names compare equal."""
    return json.dumps(row, sort_keys=True, default=str).replace(str(round_dir.parent), "<run>")


def rows(round_dir: Path) -> dict[str, list]:
    import pyarrow.parquet as pq

    out = {}
    for f in sorted((round_dir / "datasets").rglob("*.parquet")):
        out[f.parent.name] = sorted(_dump(r, round_dir) for r in pq.read_table(f).to_pylist())
    return out


def trajectory_rows(round_dir: Path) -> list[str]:
    import pyarrow.parquet as pq

    return sorted(_dump(r, round_dir)
                  for f in sorted((round_dir / "trajectories").glob("*.parquet")) for r in pq.read_table(f).to_pylist())


def markers(round_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (round_dir / "trajectories").glob("*.done")}


def leftovers(round_dir: Path) -> list[str]:
    return [str(p.relative_to(round_dir)) for p in round_dir.rglob(".*") if p.name.endswith(".tmp") or
            (p.is_dir() and "-" in p.name)]


WATCH = {
    "generation": lambda d: (d / "trajectories").exists() and not list((d / "trajectories").glob("*.done")),
    "between-shards": lambda d: bool(list((d / "trajectories").glob("*.done"))),
    "curation": lambda d: (d / "datasets").exists(),
    "training": lambda d: bool(list(d.glob(".adapter-*"))),
    "evaluation": lambda d: (d / "eval").exists(),
}


def kill_at(point: str, cmd: list[str], env: dict, round_dir: Path, timeout: float, cwd: Path) -> dict:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            cwd=cwd)
    deadline = time.monotonic() + timeout
    while not WATCH[point](round_dir):
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
            return {"hit": False}
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return {"hit": True, "markers": markers(round_dir)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=8, help="problems per task")
    parser.add_argument("--points", default=",".join([*WATCH, "manifest-lineage"]))
    parser.add_argument("--timeout", type=float, default=900, help="seconds a run may take")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (runs, server log)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="reflectevo-crash-"))
    code = work / "code"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(code), "HEAD"], check=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PREFECT_HOME": str(work / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "REFLECTEVO_CACHE_DIR": os.environ.get("REFLECTEVO_CACHE_DIR", str(work / "cache")),
           "PYTHONPATH": str(code)}
    server, url = start_server(env, work / "server.log")
    env["PREFECT_API_URL"] = url
    config = work / "tiny.json"
    config.write_text(json.dumps(CONFIG))
    runs = work / "runs"
    try:
        start = time.monotonic()
        ref = subprocess.run(evolve_cmd(runs, "reference", config, args.limit), env=env, capture_output=True,
                             text=True, timeout=args.timeout, cwd=code)
        ref_seconds = time.monotonic() - start
        if ref.returncode != 0:
            raise SystemExit(f"reference run failed:\n{ref.stderr[-3000:]}")
        ref_dir = runs / "reference" / "round-1"
        reference, ref_traj = rows(ref_dir), trajectory_rows(ref_dir)
        print(f"reference round: {ref_seconds:.0f} s, datasets {{{', '.join(f'{k}: {len(v)}' for k, v in reference.items())}}}, "
              f"{len(ref_traj)} trajectories; load {os.getloadavg()[0]:.1f}", flush=True)
        for point in args.points.split(","):
            name = f"crash-{point}"
            round_dir = runs / name / "round-1"
            cmd = evolve_cmd(runs, name, config, args.limit)
            if point == "manifest-lineage":
                subprocess.run(cmd, env=env, capture_output=True, timeout=args.timeout, check=True, cwd=code)
                (runs / name / "lineage.json").unlink()
                state = {"hit": True, "markers": markers(round_dir)}
            else:
                state = kill_at(point, cmd, env, round_dir, args.timeout, code)
            if not state["hit"]:
                print(f"{point:17s} not reached (the run ended or timed out first)", flush=True)
                continue
            start = time.monotonic()
            rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout, cwd=code)
            seconds = time.monotonic() - start
            lineage = json.loads((runs / name / "lineage.json").read_text()) if (runs / name / "lineage.json").exists() else {}
            after = markers(round_dir)
            reused = sum(1 for k, v in state["markers"].items() if after.get(k) == v)
            evals = len(list((round_dir / "eval").glob("results_*.json")))
            rounds = [e["round"] for e in lineage.get("history", [])]
            print(f"{point:17s} rerun rc={rerun.returncode} {seconds:4.0f} s | datasets identical: "
                  f"{rows(round_dir) == reference} | trajectories identical: {trajectory_rows(round_dir) == ref_traj} | "
                  f"finished shards reused: {reused}/{len(state['markers'])} | leftovers: {leftovers(round_dir) or 'none'}"
                  f" | eval result sets: {evals} | lineage rounds: {rounds} | round-2 started: "
                  f"{(runs / name / 'round-2').exists()}", flush=True)
            data, traj = rows(round_dir), trajectory_rows(round_dir)
            if traj != ref_traj:
                print(f"   first trajectory difference: {first_difference(ref_traj, traj)}")
            for name_ in sorted(set(reference) | set(data)):
                if reference.get(name_) != data.get(name_):
                    print(f"   first {name_} difference: {first_difference(reference.get(name_, []), data.get(name_, []))}")
            if rerun.returncode != 0:
                print("   " + rerun.stderr.strip().splitlines()[-1] if rerun.stderr.strip() else "   (no stderr)")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(code)], check=False)
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
