"""Prefect artifacts of a round: what the UI shows beside the round's flow run.

Per round: a metrics table (Acc@t1, Acc@t2, difference per task), a curation table (rows in, kept and dropped at
each filter), a summary (markdown with the accuracy plot inline and the dataset card's body), a link to the plot's
PNG in the run folder, and during generation a progress bar updated as shards finish. Keys are
`reflectevo-<name>-round-<r>-<kind>`, so reruns of a round add versions to the same artifact.
"""

from __future__ import annotations

from uuid import UUID

from prefect import task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from reflectevo.config import RoundConfig
from reflectevo.schema import RoundManifest
from stages.lineage import Lineage, artifact_key
from stages.curate import card_summary
from stages.report import curation_rows, metrics_rows, plot_accuracy, summary_markdown


@task(name="publish-round", task_run_name="publish-r{manifest.round}")
def publish_round_task(cfg: RoundConfig, manifest: RoundManifest, lineage: Lineage) -> dict[str, str]:
    """Create the round's tables, summary and plot link; returns their keys by kind."""
    r = manifest.round
    key = {kind: artifact_key(cfg, r, kind) for kind in ("metrics", "curation", "summary", "accuracy-plot")}
    create_table_artifact(metrics_rows(manifest.metrics), key=key["metrics"],
                          description=f"Round {r}: held-out Acc@t1, Acc@t2 and their difference per task")
    counts = next(iter(manifest.datasets.values())).counts if manifest.datasets else {}
    create_table_artifact(curation_rows(counts), key=key["curation"],
                          description=f"Round {r}: reflections in, kept and dropped at each curation step")
    png_path = cfg.layout(r).accuracy_plot  # the lineage up to this round, kept with the round
    png = plot_accuracy(lineage, png_path)
    card = card_summary(counts)  # the card's body, from the counts it was written from
    create_markdown_artifact(summary_markdown(manifest, lineage, card, png), key=key["summary"],
                             description=f"Round {r} of {cfg.name}: summary, accuracy by round, dataset card")
    create_link_artifact(png_path.resolve().as_uri(), link_text="accuracy by round (PNG)",
                         key=key["accuracy-plot"], description=f"Accuracy plot in the run folder: {png_path}")
    return key


def start_progress(cfg: RoundConfig, round_: int, shards: int) -> UUID:
    return create_progress_artifact(0.0, key=artifact_key(cfg, round_, "generation"),
                                    description=f"Round {round_}: generation shards finished (of {shards})")


def report_progress(artifact_id: UUID, done: int, total: int) -> None:
    update_progress_artifact(artifact_id, 100.0 * done / max(total, 1))
