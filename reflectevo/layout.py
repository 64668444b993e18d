"""Where a round's files live: the one place that spells a path inside a run folder.

    <run_dir>/<name>/round-<r>/
        config.json                    the RoundConfig the round ran with
        problems/pool-00000.jsonl ...  generation pool, one file per shard
        problems/eval.jsonl            held-out problems (never in the pool)
        trajectories/shard-00000.parquet (+ .done marker)
        datasets/{dplus,dpm,dpref}/train-0000k-of-0000n.parquet, datasets/README.md (dataset card)
        adapter/                       the LoRA adapter this round trained (absent if skipped)
        eval/results_<ts>.json, eval/samples_<task>_<ts>.jsonl
        accuracy.png                   the lineage's accuracy by round, up to this one
        manifest.json

Stages, tasks and the CLI ask a `RoundLayout` for a path instead of joining names themselves, so a file moves
in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROUND_FOLDER = re.compile(r"round-(\d+)")


@dataclass(frozen=True)
class RoundLayout:
    """The paths of round `round` of the run folder `run` (`<run_dir>/<name>`)."""

    run: Path
    round: int

    @property
    def folder(self) -> Path:
        return self.run / f"round-{self.round}"

    @property
    def config(self) -> Path:
        return self.folder / "config.json"

    @property
    def manifest(self) -> Path:
        return self.folder / "manifest.json"

    @property
    def problems(self) -> Path:
        return self.folder / "problems"

    def pool_shard(self, shard: int) -> Path:
        return self.problems / f"pool-{shard:05d}.jsonl"

    @property
    def eval_problems(self) -> Path:
        return self.problems / "eval.jsonl"

    @property
    def trajectories(self) -> Path:
        return self.folder / "trajectories"

    def trajectory_shard(self, shard: int) -> Path:
        return self.trajectories / f"shard-{shard:05d}.parquet"

    @property
    def datasets(self) -> Path:
        return self.folder / "datasets"

    @property
    def dataset_card(self) -> Path:
        return self.datasets / "README.md"

    @property
    def adapter(self) -> Path:
        return self.folder / "adapter"

    @property
    def eval(self) -> Path:
        return self.folder / "eval"

    @property
    def relative_config(self) -> Path:
        """config.json relative to the run folder, as the lineage records it."""
        return self.config.relative_to(self.run)

    @property
    def accuracy_plot(self) -> Path:
        return self.folder / "accuracy.png"

    @staticmethod
    def rounds_in(run: Path) -> list[int]:
        """Round numbers of the round folders in `run`, ascending."""
        return sorted(int(m.group(1)) for p in run.glob("round-*") if (m := ROUND_FOLDER.fullmatch(p.name)))
