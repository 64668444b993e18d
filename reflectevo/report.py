"""What a round shows in the Prefect UI, as plain data: metric and filter tables, a summary, an accuracy plot.

Pure functions of a round's manifest and the lineage record; tasks/artifacts.py publishes them.
"""

from __future__ import annotations

import base64
from pathlib import Path

from reflectevo.lineage import Lineage
from reflectevo.schema import RoundManifest

# The curation filters in the order curate.filter_reason applies them: each sees what the one before kept.
FILTERS = ("empty_reflection", "unparseable_second_trial", "states_gold_answer", "duplicate")


def metrics_rows(metrics: dict[str, dict[str, float]]) -> list[dict]:
    """Acc@t1, Acc@t2 and their difference per task, 'all' last."""
    order = sorted(t for t in metrics if t != "all") + (["all"] if "all" in metrics else [])
    return [{"task": t, "acc@t1": round(metrics[t]["acc@t1"], 4), "acc@t2": round(metrics[t]["acc@t2"], 4),
             "difference": round(metrics[t]["delta"], 4), "n": int(metrics[t]["n"])} for t in order]


def curation_rows(counts: dict[str, int]) -> list[dict]:
    """Rows in, kept and dropped at each curation step: the filters, then the D+ and Dpref selections."""
    rows = []
    remaining = counts.get("reflections", 0)
    for name in FILTERS + tuple(sorted({k[len("dropped_"):] for k in counts if k.startswith("dropped_")}
                                       - set(FILTERS) - {"judge_inconsistent"})):
        dropped = counts.get(f"dropped_{name}", 0)
        rows.append({"step": f"filter: {name}", "in": remaining, "kept": remaining - dropped, "dropped": dropped})
        remaining -= dropped
    dplus = counts.get("dplus", 0)
    rows.append({"step": "D+: second trial correct", "in": remaining, "kept": dplus, "dropped": remaining - dplus})
    candidates, dpref = counts.get("dpref_candidates", 0), counts.get("dpref", 0)
    rows.append({"step": "Dpref: judge agrees both orders", "in": candidates, "kept": dpref,
                 "dropped": candidates - dpref})
    return rows


def card_excerpt(card_path: str | Path, max_lines: int = 20) -> str:
    """The dataset card's body (YAML front matter removed, headings two levels down), cut before its config dump."""
    text = Path(card_path).read_text() if Path(card_path).exists() else ""
    if text.startswith("---"):
        text = text.split("---", 2)[-1]
    text = text.split("## Round config", 1)[0].strip()
    lines = [f"##{line}" if line.startswith("#") else line for line in text.splitlines()]  # under our headings
    return "\n".join(lines[:max_lines]) + ("\n\n…" if len(lines) > max_lines else "")


def generation_counts(manifest: RoundManifest) -> dict[str, int]:
    total: dict[str, int] = {}
    for shard in manifest.trajectories:
        for k, v in shard.counts.items():
            total[k] = total.get(k, 0) + v
    return total


def summary_markdown(manifest: RoundManifest, lineage: Lineage, card: str, plot_png: bytes | None) -> str:
    """The round in a few lines: model, data, training, held-out accuracy, the lineage so far, the card."""
    a = manifest.adapter
    trained = f"adapter `{a.path}` from {a.rows} rows ({a.setting})" if a and a.path else \
        f"no adapter: {a.skipped_reason if a else 'training did not run'}"
    gen, model = generation_counts(manifest), manifest.model
    lines = [
        f"# Round {manifest.round} of `{lineage.name}`",
        "",
        f"- model: `{model.base}`" + (f" + adapter `{model.adapter}`" if model.adapter else ""),
        f"- generated: {gen.get('problems', 0)} problems in {len(manifest.trajectories)} shards, "
        f"{gen.get('reflections', 0)} reflections, {gen.get('second_correct', 0)} fixed on the second trial",
        "- curated: " + ", ".join(f"{name} {d.rows} rows" for name, d in manifest.datasets.items()),
        f"- trained: {trained}",
        f"- run folder: `{manifest.run_dir}`",
        "",
        "| task | Acc@t1 | Acc@t2 | difference | n |",
        "|---|---|---|---|---|",
        *[f"| {r['task']} | {r['acc@t1']:.3f} | {r['acc@t2']:.3f} | {r['difference']:+.3f} | {r['n']} |"
          for r in metrics_rows(manifest.metrics)],
        "",
        f"## Lineage: {len(lineage.history)} round(s)",
        "",
        "| round | Acc@t1 (all) | Acc@t2 (all) | D+ rows | trained |",
        "|---|---|---|---|---|",
        *[f"| {e.round} | {e.metrics.get('all', {}).get('acc@t1', float('nan')):.3f} | "
          f"{e.metrics.get('all', {}).get('acc@t2', float('nan')):.3f} | {e.dplus_rows} | "
          f"{'yes' if e.trained else 'no'} |" for e in lineage.history],
    ]
    if plot_png:
        lines += ["", f"![accuracy by round](data:image/png;base64,{base64.b64encode(plot_png).decode()})"]
    lines += ["", "## Dataset card (excerpt)", "", card]
    return "\n".join(lines) + "\n"


def plot_accuracy(lineage: Lineage, path: str | Path) -> bytes:
    """Acc@t1 and Acc@t2 by round, per task (all tasks bold); writes the PNG to `path` and returns its bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [e.round for e in lineage.history]
    tasks = sorted({t for e in lineage.history for t in e.metrics} - {"all"}) + ["all"]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for i, task in enumerate(tasks):
        width = 2.5 if task == "all" else 1.0
        color = "black" if task == "all" else f"C{i}"
        for metric, style in (("acc@t1", "--"), ("acc@t2", "-")):
            ys = [e.metrics.get(task, {}).get(metric, float("nan")) for e in lineage.history]
            ax.plot(rounds, ys, style, marker="o", color=color, linewidth=width, label=f"{task} {metric}")
    ax.set_xlabel("round")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xticks(rounds)
    ax.set_title(f"{lineage.name}: Acc@t1 (dashed) and Acc@t2 (solid) by round")
    ax.legend(fontsize=7, ncol=2, loc="best")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path.read_bytes()
