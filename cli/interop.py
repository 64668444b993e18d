"""`reflectevo import | export | export-model`: official ReflectEvo data in and out, and a merged model out
(stages/interop.py does the work)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from reflectevo.errors import DataError, RefusedError
from stages.interop import DatasetName, ImportKind, export_official, import_official


def import_command(
    source: Annotated[str, typer.Argument(help="Official-format JSONL file, or a hub dataset id or folder.")],
    out: Annotated[Path, typer.Option(help="Datasets folder; records go to OUT/<dplus|dpm|dpref>/.")],
    task: Annotated[str, typer.Option(help="Task name recorded on every record.")] = "imported",
    kind: Annotated[ImportKind, typer.Option(help="auto: D+ or pairs from the fields; pairs are Dpref when every "
                                                  "rejected second answer is the gold one, else D±.")] = "auto",
    split: Annotated[str, typer.Option(help="Hub datasets: the split to read.")] = "train",
    rendered_prompts: Annotated[bool, typer.Option(help="Prompts are already chat-template-rendered (files "
                                                        "exported by this project), not user messages.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace a dataset file a different import wrote.")] = False,
) -> None:
    """Import official ReflectEvo D+ / D± / Dpref records as a dataset any training setting can use."""
    manifest = import_official(source, str(out), task, kind, split, rendered_prompts, force)
    typer.echo(f"{manifest.name}: {manifest.rows} records -> {manifest.path}")


def export_command(
    path: Annotated[str, typer.Argument(help="A dataset parquet file or folder (e.g. a round's datasets/dplus).")],
    out: Annotated[Path, typer.Option(help="Output JSONL file.")],
    dataset: Annotated[Optional[DatasetName], typer.Option(help="The dataset, when PATH holds several.")] = None,
) -> None:
    """Export a dataset as official ReflectEvo JSONL records."""
    n = export_official(path, str(out), dataset)
    typer.echo(f"{n} records -> {out}")


def export_model_command(
    adapter_dir: Annotated[str, typer.Argument(help="A LoRA adapter folder a round trained.")],
    out: Annotated[Path, typer.Option(help="Folder for the standalone merged model.")],
    base: Annotated[Optional[str], typer.Option(help="Base model; default: the one the adapter records.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing model folder at --out.")] = False,
) -> None:
    """Merge a LoRA adapter into its base model and save it, with the tokenizer, as a standalone checkpoint."""
    from models.training import merge_adapter

    folder = Path(adapter_dir)
    if not (folder / "adapter_config.json").is_file():
        raise DataError(f"ADAPTER_DIR {adapter_dir}: " + ("does not exist" if not folder.exists() else
                        "has no adapter_config.json, so it is not a LoRA adapter folder") +
                        "; fix: pass a round's adapter folder, e.g. runs/default/round-1/adapter")
    if base is not None:
        from stages.prepare import check_model

        check_model(base)
    if out.exists() and not out.is_dir():
        raise RefusedError(f"--out {out}: is a file; fix: choose a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise RefusedError(f"--out {out}: folder exists and is not empty; fix: pass --force to replace it, or "
                           "choose a new folder")
    try:
        typer.echo(f"merged model -> {merge_adapter(adapter_dir, str(out), base)}")
    except ValueError as e:
        raise DataError(f"ADAPTER_DIR {adapter_dir}: {e}") from None
