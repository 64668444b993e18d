"""Serve the deployments of prefect.yaml from this one process: `python -m deployments.serve`.

The one-process local setup: no work pool and no worker; flow runs start as subprocesses of this one. The
deployments (names, parameters, schedules, concurrency limits, environment) are read from prefect.yaml, so the
two setups cannot drift apart. Stop it with Ctrl-C or SIGTERM; its schedules are paused on shutdown. On a server
that has the work-pool deployments of the same names, delete those first: a re-registered deployment keeps
its old code location.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def load_spec(path: Path) -> list[dict]:
    """The `deployments:` entries of a prefect.yaml."""
    spec = yaml.safe_load(path.read_text())
    deployments = spec.get("deployments") or []
    if not deployments:
        raise ValueError(f"{path}: no `deployments:` entries to serve")
    return deployments


def build(entries: list[dict]) -> list:
    """RunnerDeployments equivalent to the prefect.yaml entries (work pools aside: this process runs them)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.flows import load_flow_from_entrypoint
    from prefect.schedules import Cron

    built = []
    for d in entries:
        flow = load_flow_from_entrypoint(str(ROOT / d["entrypoint"]))
        limit = d.get("concurrency_limit")
        built.append(flow.to_deployment(
            name=d["name"], description=d.get("description"), tags=d.get("tags"), parameters=d.get("parameters"),
            schedules=[Cron(s["cron"], timezone=s.get("timezone"), active=s.get("active", True))
                       for s in d.get("schedules") or []],
            concurrency_limit=ConcurrencyLimitConfig(**limit) if isinstance(limit, dict) else limit,
        ))
    return built


def job_environment(entries: list[dict]) -> dict[str, str]:
    """The environment the entries give their flow runs; served runs inherit it from this process."""
    env: dict[str, str] = {}
    for d in entries:
        env.update((d.get("work_pool") or {}).get("job_variables", {}).get("env", {}))
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefect-file", type=Path, default=ROOT / "prefect.yaml")
    args = parser.parse_args()
    entries = load_spec(args.prefect_file)
    for key, value in job_environment(entries).items():
        os.environ.setdefault(key, str(value))
    os.chdir(ROOT)  # relative run_dir parameters mean the same folder as under `prefect deploy`

    from prefect import serve

    serve(*build(entries))


if __name__ == "__main__":
    main()
