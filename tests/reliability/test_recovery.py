"""A dead run never blocks the next one; a crash never loses a round; permanent errors are never retried;
official files with known flaws load whole, and every repair is reported."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from problems import load_problems_reporting, summarize_repairs
from reflectevo.config import ProblemSource, RoundConfig
from reflectevo.errors import ConfigError, DataError, RefusedError
from reflectevo.schema import ModelRef, RoundManifest
from stages.lineage import lineage_lock, next_round, read_lineage, reconcile
from stages.prepare import write_manifest
from tasks import is_permanent, retry_transient

ROOT = Path(__file__).parents[2]


def hold_in_child(code: str, env: dict | None = None) -> subprocess.Popen:
    """A child process that runs `code` (which prints 'held' once it holds its lock), then sleeps."""
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code) + "\nprint('held', flush=True)\n"
                              "import time; time.sleep(300)\n"], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    assert child.stdout.readline().strip() == "held"
    return child


class TestEngineSlot:
    def test_a_killed_holder_frees_the_slot_at_once(self, tmp_path, monkeypatch):
        monkeypatch.setenv("REFLECTEVO_LOCK_DIR", str(tmp_path))
        from tasks.concurrency import engine_slot

        child = hold_in_child("""
            import logging
            from tasks.concurrency import engine_slot
            held = engine_slot("generate", logging.getLogger("child"))
            held.__enter__()
        """, {"REFLECTEVO_LOCK_DIR": str(tmp_path)})
        got = threading.Event()

        def take():
            with engine_slot("evaluate", logging.getLogger("test")):
                got.set()

        waiter = threading.Thread(target=take, daemon=True)
        waiter.start()
        assert not got.wait(2.5), "the slot was taken while another process held it"
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        killed_at = time.monotonic()
        assert got.wait(10), "a killed holder's slot was not freed"
        assert time.monotonic() - killed_at < 5
        waiter.join()

    def test_two_slots_admit_two_holders(self, tmp_path, monkeypatch):
        monkeypatch.setenv("REFLECTEVO_LOCK_DIR", str(tmp_path))
        monkeypatch.setenv("REFLECTEVO_ENGINE_SLOTS", "2")
        from tasks.concurrency import engine_slot

        child = hold_in_child("""
            import logging
            from tasks.concurrency import engine_slot
            held = engine_slot("generate", logging.getLogger("child"))
            held.__enter__()
        """, {"REFLECTEVO_LOCK_DIR": str(tmp_path), "REFLECTEVO_ENGINE_SLOTS": "2"})
        try:
            start = time.monotonic()
            with engine_slot("train", logging.getLogger("test")):
                assert time.monotonic() - start < 2
        finally:
            child.kill()
            child.wait()


class TestLineage:
    def cfg(self, tmp_path) -> RoundConfig:
        return RoundConfig(model="tiny", run_dir=str(tmp_path / "runs"), name="l")

    def test_the_lock_refuses_a_second_holder_and_dies_with_the_first(self, tmp_path):
        cfg = self.cfg(tmp_path)
        child = hold_in_child(f"""
            from reflectevo.config import RoundConfig
            from stages.lineage import lineage_lock
            held = lineage_lock(RoundConfig(model="tiny", run_dir={cfg.run_dir!r}, name="l"))
            held.__enter__()
        """)
        with pytest.raises(RefusedError, match=f"already being run .*{child.pid}"):
            with lineage_lock(cfg):
                pass
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        with lineage_lock(cfg):
            with lineage_lock(cfg):  # reentrant in one process: the CLI holds it, then the flow it runs
                pass

    def test_a_round_whose_lineage_entry_was_lost_is_recorded_before_the_next(self, tmp_path):
        """kill -9 between manifest.json and lineage.json: the next run must not redo round 1 or forget it."""
        cfg = self.cfg(tmp_path)
        manifest = RoundManifest(round=1, run_dir=str(cfg.layout(1).folder), model=ModelRef(base="tiny", base_sha256="0"),
                                 config=cfg.model_dump(), metrics={"all": {"acc@t2": 0.5}})
        write_manifest(cfg, manifest)
        assert read_lineage(cfg) is None
        assert next_round(cfg) == 2
        assert reconcile(cfg) == [1] and reconcile(cfg) == []
        lineage = read_lineage(cfg)
        assert [e.round for e in lineage.history] == [1] and lineage.latest.metrics == {"all": {"acc@t2": 0.5}}


class TestRetry:
    class State:
        def __init__(self, error):
            self.error = error

        def result(self):
            raise self.error

    @pytest.mark.parametrize("error", [
        ConfigError("x"), DataError("x"), RefusedError("x"), ValueError("x"), KeyError("x"),
        OSError(28, "No space left on device"), FileNotFoundError(2, "gone"), PermissionError(13, "no"),
        OSError("Incorrect path_or_model_id: '/nonexistent'. Please provide either the path to a local folder"),
        RuntimeError("Repo id must be in the form 'repo_name' or 'namespace/repo_name': '/nonexistent'"),
    ])
    def test_permanent_errors_are_not_retried(self, error):
        assert is_permanent(error) and not retry_transient(None, None, self.State(error))

    def test_a_missing_sandbox_tool_is_not_retried(self):
        from verifiers.sandbox import SandboxUnavailable

        assert not retry_transient(None, None, self.State(SandboxUnavailable("bwrap is missing")))

    @pytest.mark.parametrize("error", [RuntimeError("CUDA error: unspecified launch failure"), ConnectionError(),
                                       TimeoutError(), OSError(5, "Input/output error")])
    def test_crashes_and_lost_connections_are_retried(self, error):
        assert retry_transient(None, None, self.State(error))


class TestOfficialFiles:
    def test_option_letters_without_a_period_are_read_and_counted(self, tmp_path):
        rows = [{"id": 1, "question": "Q one\nA. x\nB. y", "answer": "a"},
                {"id": 2, "question": "Q two\nA All American athletes\nB Some are not\nC None", "answer": "b"},
                {"id": 3, "question": "Q three\nA: red\nB: blue", "answer": "b"},
                {"id": 4, "question": "A study found this.\nWhich follows?\nA) more\nB) less", "answer": "a"}]
        path = tmp_path / "logiqa_test.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        problems, repairs = load_problems_reporting(ProblemSource(task="logiqa", format="logiqa", path=str(path)))
        assert [p.choices for p in problems] == [["x", "y"], ["All American athletes", "Some are not", "None"],
                                                 ["red", "blue"], ["more", "less"]]
        assert problems[3].question == "A study found this.\nWhich follows?"
        assert [(r.kind, r.line) for r in repairs] == [("option_markers", 2), ("option_markers", 3)]
        assert summarize_repairs(repairs) == [f"{path}: 2 option letters without a period ('A text', 'A:') read as "
                                              "options (lines 2, 3)"]

    def test_a_repeated_id_becomes_unique_with_a_warning_naming_the_lines(self, tmp_path, caplog):
        rows = [{"id": 1402, "question": "first?", "answer": "x"}, {"id": 7, "question": "q", "answer": "y"},
                {"id": 1402, "question": "second?", "answer": "z"}]
        path = tmp_path / "bigbench.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        with caplog.at_level(logging.WARNING):
            problems, repairs = load_problems_reporting(ProblemSource(task="bb", format="bigbench", path=str(path)))
        assert [p.id for p in problems] == ["1402", "7", "1402#2"]
        assert [(r.kind, r.line) for r in repairs] == [("duplicate_id", 3)]
        assert "id '1402' is on lines 1, 3; line 3 is now '1402#2'" in caplog.text

    def test_verify_matches_a_repeated_id_by_line_and_counts_the_repairs(self, tmp_path):
        from cli.app import app

        problems = [{"id": 1402, "question": "Q\nOptions:\nA. yes\nB. no", "answer": "a"},
                    {"id": 1402, "question": "Q2\nOptions:\nA yes\nB no", "answer": "b"}]
        answers = [{"id": 1402, "answer": "Finish[A]"}, {"id": 1402, "answer": "Finish[B]"}]
        p, a, out = tmp_path / "p.jsonl", tmp_path / "a.jsonl", tmp_path / "v.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in problems))
        a.write_text("".join(json.dumps(r) + "\n" for r in answers))
        result = CliRunner().invoke(app, ["verify", "--task", "bigbench", "--problems", str(p), "--answers", str(a),
                                          "--out", str(out)], terminal_width=200)
        assert result.exit_code == 0, result.output
        assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["1402", "1402#2"]
        for label, n in [("option letters without a period", 1), ("repeated ids made unique", 1),
                         ("answers to a repeated id matched by line", 2)]:
            assert any(label in line and line.rstrip(" │").endswith(str(n)) for line in result.output.splitlines()), \
                result.output


def test_the_adapter_hash_ignores_key_and_target_module_order(tmp_path):
    from models.loading import weights_sha256

    def adapter(name, config):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(b"weights")
        (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))
        return str(folder)

    one = adapter("a", {"r": 8, "target_modules": ["q_proj", "v_proj", "k_proj"], "layers": [3, 1]})
    two = adapter("b", {"target_modules": ["k_proj", "q_proj", "v_proj"], "r": 8, "layers": [3, 1]})
    other_layers = adapter("c", {"r": 8, "target_modules": ["q_proj", "v_proj", "k_proj"], "layers": [1, 3]})
    other_rank = adapter("d", {"r": 16, "target_modules": ["q_proj", "v_proj", "k_proj"], "layers": [3, 1]})
    assert weights_sha256(one) == weights_sha256(two)
    assert len({weights_sha256(one), weights_sha256(other_layers), weights_sha256(other_rank)}) == 3


def test_leftovers_of_killed_runs_are_removed_and_nothing_else(tmp_path):
    from stages.prepare import drop_superseded_results, tidy_run

    cfg = RoundConfig(model="tiny", run_dir=str(tmp_path / "runs"), name="t")
    round_dir = cfg.layout(1).folder
    for f in [".adapter-x1y2/adapter_model.safetensors", "trajectories/.shard-00000.parquet.abc.tmp",
              "datasets/.dplus.k2j3.tmp/train-00000-of-00001.parquet",
              "adapter/.sha256.json", "adapter/adapter_config.json", "trajectories/shard-00000.parquet",
              "eval/results_2026-01-01T00-00-00.json", "eval/samples_all_2026-01-01T00-00-00.jsonl",
              "eval/results_2026-01-02T00-00-00.json", "eval/samples_all_2026-01-02T00-00-00.jsonl"]:
        (round_dir / f).parent.mkdir(parents=True, exist_ok=True)
        (round_dir / f).write_text("x")
    assert sorted(Path(p).name for p in tidy_run(cfg)) == [".adapter-x1y2", ".dplus.k2j3.tmp",
                                                           ".shard-00000.parquet.abc.tmp"]
    manifest = RoundManifest(round=1, run_dir=str(round_dir), model=ModelRef(base="tiny", base_sha256="0"), config={},
                             metrics_path=str(round_dir / "eval" / "results_2026-01-02T00-00-00.json"))
    assert sorted(Path(p).name for p in drop_superseded_results(manifest)) == [
        "results_2026-01-01T00-00-00.json", "samples_all_2026-01-01T00-00-00.jsonl"]
    left = sorted(str(p.relative_to(round_dir)) for p in round_dir.rglob("*") if p.is_file())
    assert left == ["adapter/.sha256.json", "adapter/adapter_config.json", "eval/results_2026-01-02T00-00-00.json",
                    "eval/samples_all_2026-01-02T00-00-00.jsonl", "trajectories/shard-00000.parquet"]
