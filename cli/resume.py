"""`reflectevo resume <run> --round R`: run round R of a run folder again, reusing every finished shard.

The same as a new deployment run of that round: shards whose completion markers match their content keys come
back from Prefect's cache (state Cached) or from disk, and only missing or failed shards are generated.
The round runs with the config.json it was started with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.rounds import print_round, report_repairs
from reflectevo.errors import ConfigError
from reflectevo.layout import RoundLayout


def round_config(run: Path, round_: int) -> Path:
    """The config a round started with; an error that says how to start it when it never did."""
    if not run.is_dir():
        raise ConfigError(f"RUN {run}: " + ("is a file" if run.exists() else "folder does not exist") +
                          "; fix: pass the run folder <run_dir>/<name>, e.g. runs/default")
    path = RoundLayout(run, round_).config
    if not path.exists():
        started = [f"round-{r}" for r in RoundLayout.rounds_in(run) if RoundLayout(run, r).config.exists()]
        raise ConfigError(
            f"--round {round_}: round {round_} of {run} never started ({path} is missing; started: "
            f"{', '.join(started) or 'none'}); fix: start it with: reflectevo evolve --run-dir {run.parent} "
            f"--name {run.name} --round {round_}")
    return path


def resume_command(
    run: Annotated[Path, typer.Argument(help="The run folder, <run_dir>/<name>.")],
    round: Annotated[int, typer.Option("--round", min=1, help="The round to run again.")],
    result_storage: Annotated[Optional[str], typer.Option(
        help="Where shard results are cached: a directory or a storage block slug "
             "(default <run>/prefect-results).")] = None,
) -> None:
    """Run round R of a run again: finished shards are reused, missing or failed ones are generated."""
    from reflectevo.config import load_config
    from stages.lineage import lineage_lock, result_storage_for
    from stages.prepare import read_manifest

    config = round_config(run, round)
    # Checked before Prefect starts: the stored config still validates, its model and problem files still load.
    cfg = load_config(str(config), {"run_dir": str(run.parent), "name": run.name})
    report_repairs(cfg)
    try:
        result_storage_for(cfg, result_storage)
    except ValueError as e:
        raise ConfigError(f"--result-storage: {e}") from None
    with lineage_lock(cfg):
        from flows.evolve import evolve

        evolve(rounds=1, round=round, run_dir=str(run.parent), name=run.name, config=str(config),
               result_storage=result_storage)
    print_round(read_manifest(cfg, round))
