"""What the round commands (`evolve`, `resume`) print: a round's per-stage counts and metrics, and the problem
rows a source needed repaired."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reflectevo.schema import RoundManifest
from stages.report import pm

console = Console()


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
        baseline = f" Acc@t2 without reflection={pm(m, 'acc@t2_noreflect')}" if "acc@t2_noreflect" in m else ""
        table.add_row(escape(f"evaluate [{task}]"), f"Acc@t1={pm(m, 'acc@t1')} Acc@t2={pm(m, 'acc@t2')} "
                                                    f"delta={pm(m, 'delta')}{baseline} n={int(m['n'])}")
    console.print(table)


def report_repairs(cfg) -> None:
    """Check the model and load every problem source whole; print what had to be repaired, one line per kind."""
    from problems import summarize_repairs
    from stages.prepare import preflight

    for task, repairs in preflight(cfg).items():
        for line in summarize_repairs(repairs):
            typer.echo(f"repaired [{task}]: {line}", err=True)
