"""What a round shows in the Prefect UI, as plain data: metric and filter tables, a summary, accuracy plots.

Pure functions of a round's manifest, the lineage record and evaluation results files; tasks/artifacts.py
publishes them, and bench/learning.py prints and plots learning curves with them.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from pathlib import Path

from reflectevo.schema import RoundManifest
from stages.curate import FILTERS
from stages.lineage import Lineage


def metrics_rows(metrics: dict[str, dict[str, float]]) -> list[dict]:
    """Acc@t1, Acc@t2, their difference and the no-reflection baseline per task, each with its stderr; 'all' last."""
    order = sorted(t for t in metrics if t != "all") + (["all"] if "all" in metrics else [])
    rows = []
    for t in order:
        m = metrics[t]
        row: dict = {"task": t}
        for name, label in (("acc@t1", "acc@t1"), ("acc@t2", "acc@t2"), ("delta", "difference"),
                            ("acc@t2_noreflect", "acc@t2 no reflection")):
            if name in m:
                err = m.get(f"{name}_stderr")
                row[label], row[f"{label} stderr"] = round(m[name], 4), None if err is None else round(err, 4)
        rows.append({**row, "n": int(m["n"])})
    return rows


def pm(m: dict[str, float], name: str) -> str:
    """'0.500 ± 0.029': a metric with its stderr (none for a single problem)."""
    err = m.get(f"{name}_stderr")
    return f"{m[name]:.3f}" + (f" ± {err:.3f}" if err is not None else "")


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
        "| task | Acc@t1 | Acc@t2 | difference | Acc@t2 without reflection | n |",
        "|---|---|---|---|---|---|",
        *[f"| {t} | {pm(m, 'acc@t1')} | {pm(m, 'acc@t2')} | {pm(m, 'delta')} | "
          f"{pm(m, 'acc@t2_noreflect') if 'acc@t2_noreflect' in m else '-'} | {int(m['n'])} |"
          for t, m in sorted(manifest.metrics.items(), key=lambda kv: kv[0] == "all")],
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
    lines += ["", "## Dataset card", "", card]
    return "\n".join(lines) + "\n"


def plot_accuracy(lineage: Lineage, path: str | Path) -> bytes:
    """Acc@t1 and Acc@t2 by round with stderr bars, one colour per task; writes the PNG, returns its bytes."""
    tasks = sorted({t for e in lineage.history for t in e.metrics} - {"all"}) + ["all"]
    curves = {task: {e.round: e.metrics[task] for e in lineage.history if task in e.metrics} for task in tasks}
    return plot_curves(curves, path, f"{lineage.name}: Acc@t1 (dashed) and Acc@t2 (solid) by round, stderr bars")


# ---------------------------------------------------------------------------------------------------------------
# learning curves: a lineage's held-out accuracy by round, from its evaluation results files


def curve_point(results_path: str | Path, task: str = "all") -> dict[str, float]:
    """Acc@t1, Acc@t2 and the no-reflection Acc@t2, each with its stderr, and n, from one results file."""
    doc = json.loads(Path(results_path).read_text())
    row = doc["results"][task]
    tasks = doc["group_subtasks"]["all"] if task == "all" else [task]
    point = {"n": float(sum(doc["n-samples"][t]["effective"] for t in tasks))}
    for name in ("acc@t1", "acc@t2", "acc@t2_noreflect"):
        if f"{name},none" in row:
            err = row[f"{name}_stderr,none"]
            point[name], point[f"{name}_stderr"] = row[f"{name},none"], float("nan") if err == "N/A" else err
    return point


def sample_rows(results_path: str | Path) -> Iterator[dict]:
    """Every sample row of every task's samples file written beside a results file (same timestamp)."""
    path = Path(results_path)
    stamp = path.stem.removeprefix("results_")
    for samples in sorted(path.parent.glob(f"samples_*_{stamp}.jsonl")):
        for line in samples.read_text().splitlines():
            yield json.loads(line)


def per_problem(results_path: str | Path, metric: str) -> dict[str, float]:
    """{doc_hash: metric} over the evaluation's samples."""
    return {row["doc_hash"]: float(row[metric]) for row in sample_rows(results_path)}


def paired_gain(before: str | Path, after: str | Path, metric: str = "acc@t2") -> tuple[float, float]:
    """(mean, stderr) of the per-problem change of `metric` between two evaluations of the same problems.

    Pairing by problem removes the spread that both evaluations share, so the stderr is that of the change, not
    of two independent accuracies; it raises if the two files did not score the same problems.
    """
    a, b = per_problem(before, metric), per_problem(after, metric)
    if set(a) != set(b) or not a:
        raise ValueError(f"{before} and {after} did not evaluate the same problems ({len(a)} and {len(b)})")
    diffs = [b[k] - a[k] for k in a]
    mean = sum(diffs) / len(diffs)
    var = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) if len(diffs) > 1 else float("nan")
    return mean, math.sqrt(var / len(diffs))


def plot_curves(curves: dict[str, dict[int, dict[str, float]]], path: str | Path, title: str) -> bytes:
    """Acc@t1 (dashed) and Acc@t2 (solid) by round with stderr bars, one colour per lineage; writes the PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=100)
    for i, (name, points) in enumerate(curves.items()):
        rounds = sorted(points)
        for metric, style in (("acc@t1", "--"), ("acc@t2", "-")):
            ys = [points[r].get(metric, float("nan")) for r in rounds]
            errs = [points[r].get(f"{metric}_stderr", float("nan")) for r in rounds]
            ax.errorbar(rounds, ys, yerr=[0 if math.isnan(e) else e for e in errs], fmt=style, marker="o",
                        color=f"C{i}", capsize=3, linewidth=2 if metric == "acc@t2" else 1, label=f"{name} {metric}")
    ax.set_xlabel("round")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xticks(sorted({r for points in curves.values() for r in points}))
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path.read_bytes()


def retry_breakdown(results_path: str | Path) -> dict[str, float]:
    """Where a gain in Acc@t2 comes from, over the problems wrong at trial 1: how often the retry changed its
    answer (`changed`), and how often a changed answer was right (`right_when_changed`; with k options a changed
    answer picked at random is right 1/(k-1) of the time). Stopping to repeat a failed answer moves the first;
    learning the task moves the second."""
    changed = right = wrong_first = 0
    for row in sample_rows(results_path):
        if row["statuses"][0] == "correct" or len(row["statuses"]) < 2:
            continue
        wrong_first += 1
        if row["filtered_resps"][2] != row["filtered_resps"][0]:
            changed += 1
            right += row["statuses"][1] == "correct"
    return {"changed": changed / wrong_first if wrong_first else float("nan"),
            "right_when_changed": right / changed if changed else float("nan")}
