"""A finished run on disk, made without a model or Prefect: round 1's config, problems, curated D+ and manifest,
and the lineage record. Bad-input tests check that a rejected command leaves every byte of it as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reflectevo.config import RoundConfig
from reflectevo.schema import AdapterManifest, ModelRef, RoundManifest
from stages.interop import import_official
from stages.lineage import record_round
from stages.prepare import prepare_problems, write_manifest, write_round_config

OFFICIAL = Path(__file__).parents[1] / "stages" / "fixtures"


class FinishedRun:
    def __init__(self, root: Path):
        self.root = root
        self.cfg = RoundConfig(model="tiny", run_dir=str(root / "runs"), name="default", limit=4)
        write_round_config(self.cfg, 1)
        prepare_problems(self.cfg, 1)
        round_dir = self.cfg.layout(1).folder
        dplus = import_official(str(OFFICIAL / "official_dplus.jsonl"), str(root / "staging"))
        target = round_dir / "datasets" / "dplus"
        target.mkdir(parents=True)
        for f in Path(dplus.path).parent.iterdir():
            (target / f.name).write_bytes(f.read_bytes())
        manifest = RoundManifest(
            round=1, run_dir=str(round_dir), model=ModelRef(base="tiny", base_sha256="0" * 64),
            config=self.cfg.model_dump(),
            datasets={"dplus": dplus.model_copy(update={"path": str(target / Path(dplus.path).name)})},
            adapter=AdapterManifest(path=None, skipped_reason="fixture"),
            metrics={"all": {"acc@t1": 0.5, "acc@t2": 0.75, "delta": 0.25, "n": 4}})
        write_manifest(self.cfg, manifest)
        record_round(self.cfg, manifest, None)
        self.before = self.snapshot()

    @property
    def run(self) -> Path:
        return self.cfg.run_path()

    @property
    def datasets(self) -> Path:
        return self.cfg.layout(1).datasets

    def snapshot(self) -> dict[str, bytes]:
        """Every file under the run folder (and the staging folder) with its bytes."""
        return {str(p.relative_to(self.root)): p.read_bytes()
                for folder in ("runs", "staging") for p in sorted((self.root / folder).rglob("*")) if p.is_file()}

    def untouched(self) -> bool:
        return self.snapshot() == self.before


@pytest.fixture
def finished_run(tmp_path) -> FinishedRun:
    return FinishedRun(tmp_path)


def official_lines(name: str) -> list[dict]:
    return [json.loads(line) for line in (OFFICIAL / f"official_{name}.jsonl").read_text().splitlines()]
