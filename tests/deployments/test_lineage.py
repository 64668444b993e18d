"""The lineage record, the stop conditions of round chaining, the round report, and the served deployments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reflectevo.config import RoundConfig
from reflectevo.schema import AdapterManifest, DatasetManifest, ModelRef, RoundManifest
from stages.lineage import (
    Lineage,
    RoundEntry,
    StopPolicy,
    artifact_key,
    lineage_config,
    next_round,
    read_lineage,
    record_round,
    result_storage_for,
    stop_reason,
)
from stages.curate import card_summary, dataset_card
from stages.report import curation_rows, metrics_rows

ROOT = Path(__file__).resolve().parents[2]


def entry(r: int, acc2: float | None = 0.5, dplus: int = 3) -> RoundEntry:
    metrics = {"all": {"acc@t1": 0.1, "acc@t2": acc2, "delta": 0.0, "n": 4.0}} if acc2 is not None else {}
    return RoundEntry(round=r, adapter=f"a{r}", trained=True, dplus_rows=dplus, metrics=metrics,
                      config=f"round-{r}/config.json", finished_at="2026-01-01T00:00:00+00:00")


def lineage(*entries: RoundEntry) -> Lineage:
    return Lineage(name="t", run_path="/x/t", latest=entries[-1], history=list(entries))


def manifest(cfg: RoundConfig, r: int, adapter: str | None, dplus: int) -> RoundManifest:
    return RoundManifest(
        round=r, run_dir=str(cfg.layout(r).folder), config={},
        model=ModelRef(base="tiny", base_sha256="b", adapter=f"prev{r}"),
        trajectories=[], datasets={"dplus": DatasetManifest(name="dplus", path="p", rows=dplus, sha256="s")},
        adapter=AdapterManifest(path=adapter, sha256="h" if adapter else None),
        metrics={"all": {"acc@t1": 0.0, "acc@t2": 0.25, "delta": 0.25, "n": 4.0}})


class TestStopReason:
    def test_a_gaining_lineage_goes_on(self):
        assert stop_reason(lineage(entry(1, 0.2), entry(2, 0.3)), StopPolicy(patience=1), 2) is None

    def test_max_rounds_stops_at_that_round(self):
        assert "max_rounds=2" in stop_reason(lineage(entry(1), entry(2)), StopPolicy(max_rounds=2), 2)

    def test_a_round_without_dplus_stops(self):
        assert "no D+" in stop_reason(lineage(entry(1), entry(2, dplus=0)), StopPolicy(), 2)

    def test_patience_rounds_without_gain_stop(self):
        record = lineage(entry(1, 0.5), entry(2, 0.5), entry(3, 0.4))
        assert "no held-out acc@t2 gain for 2" in stop_reason(record, StopPolicy(patience=2), 3)
        assert stop_reason(record, StopPolicy(patience=3), 3) is None  # not enough rounds to judge

    def test_a_rerun_of_an_earlier_round_is_judged_on_the_rounds_up_to_it(self):
        record = lineage(entry(1, 0.2), entry(2, 0.5), entry(3, 0.1))
        assert stop_reason(record, StopPolicy(patience=1), 2) is None

    def test_an_unrecorded_round_is_an_error_that_says_so(self):
        with pytest.raises(ValueError, match="round 3 is not in the lineage record"):
            stop_reason(lineage(entry(1)), StopPolicy(), 3)


class TestLineageRecord:
    def test_rounds_are_recorded_in_order_and_a_rerun_replaces_its_entry(self, tmp_path):
        cfg = RoundConfig(run_dir=str(tmp_path), name="n")
        record_round(cfg, manifest(cfg, 2, "ad2", 3), "run-b")
        record_round(cfg, manifest(cfg, 1, None, 0), "run-a")
        record_round(cfg, manifest(cfg, 1, "ad1", 2), "run-c")
        saved = read_lineage(cfg)
        assert [e.round for e in saved.history] == [1, 2]
        assert saved.history[0].flow_run_id == "run-c" and saved.history[0].adapter == "ad1"
        assert saved.latest.round == 2 and next_round(cfg) == 3

    def test_a_round_that_trained_nothing_passes_its_inherited_adapter_on(self, tmp_path):
        cfg = RoundConfig(run_dir=str(tmp_path), name="n")
        saved = record_round(cfg, manifest(cfg, 4, None, 0), None)
        assert saved.latest.adapter == "prev4" and not saved.latest.trained

    def test_without_a_config_a_run_continues_with_the_lineage_config(self, tmp_path):
        cfg = RoundConfig(run_dir=str(tmp_path), name="n", limit=5, shard_size=3)
        cfg.layout(1).folder.mkdir(parents=True)
        cfg.layout(1).config.write_text(cfg.model_dump_json())
        record_round(cfg, manifest(cfg, 1, "ad1", 2), None)
        overrides = {"run_dir": str(tmp_path), "name": "n", "limit": 7}
        again = lineage_config(None, overrides)
        assert again.shard_size == 3 and again.limit == 7
        assert lineage_config(None, {"run_dir": str(tmp_path), "name": "other"}).shard_size == RoundConfig().shard_size


class TestNames:
    def test_artifact_keys_hold_only_lowercase_letters_digits_and_dashes(self):
        key = artifact_key(RoundConfig(name="My_Run.v2"), 3, "metrics")
        assert key == "reflectevo-my-run-v2-round-3-metrics"

    def test_result_storage_is_a_directory_under_the_run_or_a_block_slug(self, tmp_path):
        cfg = RoundConfig(run_dir=str(tmp_path), name="n")
        assert result_storage_for(cfg, None) == str((tmp_path / "n" / "prefect-results").resolve())
        assert result_storage_for(cfg, "local-file-system/shared") == "local-file-system/shared"
        with pytest.raises(ValueError, match="neither a directory"):
            result_storage_for(cfg, "relative/dir/x")


class TestReport:
    def test_metrics_rows_put_all_last(self):
        m = {"all": {"acc@t1": 0.5, "acc@t2": 0.75, "delta": 0.25, "n": 4.0},
             "choice": {"acc@t1": 0.5, "acc@t2": 1.0, "delta": 0.5, "n": 2.0}}
        assert [(r["task"], r["difference"], r["n"]) for r in metrics_rows(m)] == [("choice", 0.5, 2), ("all", 0.25, 4)]

    def test_curation_rows_follow_the_filter_order(self):
        counts = {"reflections": 10, "dropped_unparseable_second_trial": 3, "dropped_duplicate": 1, "dplus": 2,
                  "dpref_candidates": 1, "dpref": 0, "dropped_judge_inconsistent": 1}
        rows = {r["step"]: (r["in"], r["kept"], r["dropped"]) for r in curation_rows(counts)}
        assert rows["filter: unparseable_second_trial"] == (10, 7, 3)
        assert rows["filter: duplicate"] == (7, 6, 1)
        assert rows["D+: second trial correct"] == (6, 2, 4)
        assert rows["Dpref: judge agrees both orders"] == (1, 0, 1)

    def test_the_summary_shows_the_cards_own_body_without_front_matter_or_config(self):
        counts = {"dplus": 2, "reflections": 7}
        body = card_summary(counts)
        assert "| dplus | 2 |" in body and "| reflections | 7 |" in body
        card = dataset_card(1, counts, {"name": "x"})
        assert body in card and "Round config" in card
        assert "Round config" not in body and "---" not in body.splitlines()


class TestServedDeployments:
    def test_serve_builds_the_prefect_yaml_deployments(self):
        from prefect.client.schemas.objects import ConcurrencyLimitStrategy

        from deployments.serve import build, job_environment, load_spec

        entries = load_spec(ROOT / "prefect.yaml")
        built = {d.name: d for d in build(entries)}
        assert set(built) == {"nightly", "manual"}
        nightly = built["nightly"]
        assert nightly.schedules[0].schedule.cron == "0 2 * * *" and nightly.schedules[0].schedule.timezone == "UTC"
        assert nightly.concurrency_limit == 1
        assert nightly.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.ENQUEUE
        assert nightly.entrypoint.endswith("flows/evolve.py:evolve")
        assert built["manual"].schedules == [] and built["manual"].parameters["rounds"] == 1
        assert "transformers" in job_environment(entries)["PREFECT_LOGGING_EXTRA_LOGGERS"]

    def test_the_demo_config_is_a_valid_round_config(self):
        RoundConfig.model_validate(json.loads((ROOT / "deployments" / "tiny.json").read_text()))
