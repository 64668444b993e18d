"""The `reflectevo` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reflectevo.interop import export_command, export_model_command, import_command
from reflectevo.resume_cmd import resume_command
from reflectevo.schema import RoundManifest
from verifiers.cli import verify_command

app = typer.Typer(help="ReflectEvo on Prefect: rounds of self-reflection learning for small language models.",
                  no_args_is_help=True)
console = Console()


@app.callback()
def main() -> None:
    """Subcommands: evolve, verify, import, export, export-model."""


def _split(value: str | None) -> list[str] | None:
    return [t.strip() for t in value.split(",") if t.strip()] if value else None


def print_round(manifest: RoundManifest) -> None:
    """Per-stage counts and the held-out metrics of one round."""
    gen = {}
    for shard in manifest.trajectories:
        for k, v in shard.counts.items():
            gen[k] = gen.get(k, 0) + v
    table = Table(title=f"round {manifest.round}: {manifest.run_dir}")
    table.add_column("stage")
    table.add_column("counts")
    table.add_row("generate", ", ".join(f"{k}={v}" for k, v in gen.items()))
    curated = next(iter(manifest.datasets.values())).counts if manifest.datasets else {}
    table.add_row("curate", ", ".join(f"{k}={v}" for k, v in sorted(curated.items())))
    a = manifest.adapter
    table.add_row("train", f"adapter={a.path} rows={a.rows} {a.metrics}" if a and a.path else f"skipped: {a.skipped_reason if a else '?'}")
    for task, m in manifest.metrics.items():
        table.add_row(escape(f"evaluate [{task}]"), f"Acc@t1={m['acc@t1']:.3f} Acc@t2={m['acc@t2']:.3f} "
                                             f"delta={m['delta']:+.3f} n={int(m['n'])}")
    console.print(table)


@app.command()
def evolve(
    rounds: Annotated[int, typer.Option(help="Rounds to run, each from the previous round's adapter.")] = 1,
    model: Annotated[Optional[str], typer.Option(help="'smollm2-135m' (default), 'tiny', a path or hub id.")] = None,
    engine: Annotated[Optional[str], typer.Option(help="auto | transformers | vllm")] = None,
    tasks: Annotated[Optional[str], typer.Option(help="Comma-separated task families, e.g. choice,math.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Problems per task at most.")] = None,
    run_dir: Annotated[Optional[str], typer.Option(help="Folder holding runs (default: runs).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run name (default: default).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="JSON or YAML file of RoundConfig fields.")] = None,
    round: Annotated[Optional[int], typer.Option("--round", min=1, help="First round to run (default: the one "
                                                 "after the run's latest); an earlier one is rerun.")] = None,
) -> None:
    """Run evolution rounds under Prefect and print each round's counts and Acc@t1/Acc@t2."""
    from flows.evolve import evolve as evolve_flow
    from reflectevo.config import load_config
    from reflectevo.rounds import read_manifest

    summary = evolve_flow(rounds=rounds, model=model, engine=engine, tasks=_split(tasks), limit=limit,
                          run_dir=run_dir, name=name, config=str(config) if config else None, round=round)
    cfg = load_config(str(config) if config else None, {"run_dir": run_dir, "name": name})
    for r in summary:
        print_round(read_manifest(cfg, int(r)))


app.command("verify")(verify_command)
app.command("resume")(resume_command)
app.command("import")(import_command)
app.command("export")(export_command)
app.command("export-model")(export_model_command)
