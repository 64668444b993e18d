"""The `reflectevo` command.

Every command checks its input before it starts Prefect or loads a model: a bad flag, config file, task, model
path or data file is one line on stderr naming the file, line, field and fix, exit code 2, nothing written.
An error later, inside a run, is one line with its cause and the path of a log file holding the full traceback;
exit code 2 when rerunning cannot help (`reflectevo.errors.PermanentError`), else 1.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Callable, Optional

import click
import typer

from cli.interop import export_command, export_model_command, import_command
from cli.resume import resume_command
from cli.rounds import print_round, report_repairs
from cli.verify import verify_command
from reflectevo.errors import PermanentError

# rich_markup_mode=None: usage errors print click's plain "Error: ..." line, not a box that wraps the message.
app = typer.Typer(help="ReflectEvo on Prefect: rounds of self-reflection learning for small language models.",
                  no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False)

SERVER_HINT = ("the temporary Prefect server did not start in time (PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="
               "{timeout}); fix: raise that timeout, or start a server once with `prefect server start` and point "
               "every command at it with PREFECT_API_URL=http://127.0.0.1:4200/api")


def fail(message: str, code: int) -> None:
    """Print one line on stderr and exit."""
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(code)


def write_log(command: str, error: BaseException) -> str:
    """The full traceback in a log file of its own; returns its path."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    fd, path = tempfile.mkstemp(prefix=f"reflectevo-{command}-{stamp}-", suffix=".log")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f"reflectevo {' '.join(sys.argv[1:])}\n")
        f.write("".join(traceback.format_exception(error)))
    return path


def summary(error: BaseException, limit: int = 300) -> str:
    """An error's message short enough for one line: a pydantic error's count and first error, else the text
    cut at `limit` characters (the log has it all)."""
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(map(str, first["loc"]))
        text = f"{error.error_count()} validation error(s) for {error.title}; first: {where}: {first['msg']} " \
               f"(got {first.get('input')!r})"
    else:
        text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit] + " ..."


def guarded(command: Callable) -> Callable:
    """A command whose errors end as one line and an exit code, never a traceback."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.exceptions.ClickException, KeyboardInterrupt):
            raise
        except PermanentError as e:
            fail(str(e), 2)
        except Exception as e:  # an incident inside a run: the cause here, the traceback in the log
            if "ephemeral Prefect API server" in str(e) or "ephemeral server" in str(e).lower():
                cause = SERVER_HINT.format(timeout=os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"))
            else:
                cause = f"{type(e).__name__}: {summary(e)}"
            fail(f"{cause} (full log: {write_log(command.__name__.removesuffix('_command'), e)})", 1)

    return run


@app.callback()
def main() -> None:
    """Subcommands: evolve, verify, resume, import, export, export-model."""


def _split(value: str | None) -> list[str] | None:
    return [t.strip() for t in value.split(",") if t.strip()] if value else None


@app.command()
@guarded
def evolve(
    rounds: Annotated[int, typer.Option(min=1, help="Rounds to run, each from the previous round's adapter.")] = 1,
    model: Annotated[Optional[str], typer.Option(
        help="'smollm2-135m' (default), 'tiny', 'tiny-world' ('tiny-world@<build seed>'), a path or hub id.")] = None,
    engine: Annotated[Optional[str], typer.Option(help="auto | transformers | vllm")] = None,
    tasks: Annotated[Optional[str], typer.Option(help="Comma-separated task families, e.g. choice,math.")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Problems per task at most.")] = None,
    run_dir: Annotated[Optional[str], typer.Option(help="Folder holding runs (default: runs).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run name (default: default).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="JSON or YAML file of RoundConfig fields.")] = None,
    round: Annotated[Optional[int], typer.Option("--round", min=1, help="First round to run (default: the one "
                                                 "after the run's latest); an earlier one is rerun.")] = None,
    runner: Annotated[Optional[str], typer.Option(help="local | ray: where generation shards run; ray joins the "
                                                  "cluster in RAY_ADDRESS, else starts a local Ray.")] = None,
) -> None:
    """Run evolution rounds under Prefect and print each round's counts and Acc@t1/Acc@t2."""
    from stages.lineage import evolve_overrides, lineage_config, lineage_lock
    from stages.prepare import read_manifest

    config_path = str(config) if config else None
    task_list = _split(tasks)
    # Everything is checked here, before Prefect starts or a model loads, and before anything is written.
    cfg = lineage_config(config_path, evolve_overrides(model, engine, task_list, limit, run_dir, name, runner),
                         round)
    report_repairs(cfg)
    with lineage_lock(cfg):
        from flows.evolve import evolve as evolve_flow

        summary = evolve_flow(rounds=rounds, model=model, engine=engine, tasks=task_list, limit=limit,
                              run_dir=run_dir, name=name, config=config_path, round=round, runner=runner)
    for r in summary:
        print_round(read_manifest(cfg, int(r)))


app.command("verify")(guarded(verify_command))
app.command("resume")(guarded(resume_command))
app.command("import")(guarded(import_command))
app.command("export")(guarded(export_command))
app.command("export-model")(guarded(export_model_command))
