"""Bad input to every command: exit code 2, one `error` line naming what is wrong (no traceback), and the finished
run on disk byte-for-byte as it was. Validation happens before Prefect starts, so these need no server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app

from conftest import OFFICIAL, FinishedRun, official_lines


def write(path: Path, content: str | bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def jsonl(path: Path, rows: list[dict]) -> str:
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


def evolve(run: FinishedRun, *args: str) -> list[str]:
    return ["evolve", "--run-dir", str(run.root / "runs"), "--name", "default", *args]


def with_record(name: str, line: int, **changes) -> list[dict]:
    rows = official_lines(name)
    rows[line - 1].update(changes)
    return rows


BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10"
LOGIQA = [{"id": 1, "question": "Q\nA. yes\nB. no", "answer": "a"}]

# (id, command line built from the finished run and a scratch folder, what the error line must name)
CASES = [
    # evolve: config files
    ("evolve-invalid-json", lambda r, t: evolve(r, "--config", write(t / "c.json", '{"limit": 5,\n "x": ,}')),
     ["c.json, line 2", "not valid JSON"]),
    ("evolve-yaml-unknown-field", lambda r, t: evolve(r, "--config", write(t / "c.yaml", "limit: 3\nbogus: 1\n")),
     ["c.yaml, line 2, field 'bogus'", "fix: remove it"]),
    ("evolve-empty-yaml", lambda r, t: evolve(r, "--config", write(t / "c.yaml", "")), ["c.yaml: file is empty"]),
    ("evolve-empty-json", lambda r, t: evolve(r, "--config", write(t / "c.json", "  \n")), ["c.json: file is empty"]),
    ("evolve-comment-only-yaml", lambda r, t: evolve(r, "--config", write(t / "c.yaml", "# nothing\n")),
     ["c.yaml: file holds no fields"]),
    ("evolve-negative-shard-size", lambda r, t: evolve(r, "--config", write(t / "c.json", '{\n "shard_size": -1\n}')),
     ["c.json, line 2, field 'shard_size'", "greater than or equal to 1"]),
    ("evolve-negative-max-steps", lambda r, t: evolve(r, "--config", write(t / "c.yaml", "train:\n  max_steps: -5\n")),
     ["c.yaml, line 2, field 'train.max_steps'", "-1"]),
    ("evolve-missing-config", lambda r, t: evolve(r, "--config", str(t / "nope.yaml")), ["nope.yaml: file not found"]),
    ("evolve-config-not-a-mapping", lambda r, t: evolve(r, "--config", write(t / "c.json", "[1, 2]")),
     ["c.json: expected a mapping"]),
    # evolve: flags
    ("evolve-unknown-task", lambda r, t: evolve(r, "--tasks", "nosuchtask"), ["--tasks", "'nosuchtask'", "choice, math"]),
    ("evolve-missing-model-path", lambda r, t: evolve(r, "--model", str(t / "nonexistent")),
     ["--model", "does not exist"]),
    ("evolve-empty-model-dir", lambda r, t: evolve(r, "--model", str((t / "empty").mkdir() or t / "empty")),
     ["--model", "folder is empty"]),
    ("evolve-model-is-a-file", lambda r, t: evolve(r, "--model", write(t / "weights.bin", b"\0")), ["--model", "is a file"]),
    ("evolve-limit-0", lambda r, t: evolve(r, "--limit", "0"), ["'--limit'"]),
    ("evolve-engine-bogus", lambda r, t: evolve(r, "--engine", "warp9"), ["--engine", "'auto', 'transformers' or 'vllm'"]),
    ("evolve-runner-bogus", lambda r, t: evolve(r, "--runner", "slurm"), ["--runner", "'local' or 'ray'"]),
    ("evolve-rounds-0", lambda r, t: evolve(r, "--rounds", "0"), ["'--rounds'"]),
    ("evolve-rounds-negative", lambda r, t: evolve(r, "--rounds", "-1"), ["'--rounds'"]),
    ("evolve-round-0", lambda r, t: evolve(r, "--round", "0"), ["'--round'"]),
    ("evolve-bad-problem-source", lambda r, t: evolve(r, "--config", write(t / "c.json", json.dumps(
        {"sources": [{"task": "lq", "format": "logiqa", "path": write(t / "lq.jsonl", BINARY)}]}))),
     ["lq.jsonl, line 1", "not UTF-8"]),
    # verify
    ("verify-out-is-the-problems-file", lambda r, t: ["verify", "--task", "logiqa", "--problems", jsonl(t / "p.jsonl", LOGIQA),
                                                      "--answers", jsonl(t / "a.jsonl", [{"answer": "A"}]),
                                                      "--out", str(t / "p.jsonl")],
     ["--out", "would overwrite --problems"]),
    ("verify-binary-answers", lambda r, t: ["verify", "--task", "logiqa", "--problems", jsonl(t / "p.jsonl", LOGIQA),
                                            "--answers", write(t / "a.jsonl", BINARY), "--out", str(t / "v.jsonl")],
     ["a.jsonl, line 1", "not valid JSON"]),
    ("verify-missing-problems", lambda r, t: ["verify", "--task", "logiqa", "--problems", str(t / "nope.jsonl"),
                                              "--answers", jsonl(t / "a.jsonl", [{"answer": "A"}]), "--out", str(t / "v.jsonl")],
     ["nope.jsonl: file not found"]),
    # import
    ("import-binary-file", lambda r, t: ["import", write(t / "x.jsonl", BINARY), "--out", str(t / "data")],
     ["x.jsonl, line 1", "not UTF-8"]),
    ("import-into-a-rounds-datasets", lambda r, t: ["import", str(OFFICIAL / "official_dplus.jsonl"), "--out", str(r.datasets)],
     ["--out", "inside round folder", "fix:"]),
    ("import-reflections-42", lambda r, t: ["import", jsonl(t / "d.jsonl", with_record("dplus", 2, reflections=42)),
                                            "--out", str(t / "data")],
     ["d.jsonl, line 2, field 'reflections'", "expected a string"]),
    ("import-id-null", lambda r, t: ["import", jsonl(t / "d.jsonl", with_record("dpm", 3, id=None)), "--out", str(t / "data")],
     ["d.jsonl, line 3, field 'id'"]),
    ("import-missing-file", lambda r, t: ["import", str(t / "nope.jsonl"), "--out", str(t / "data")],
     ["nope.jsonl: file not found"]),
    ("import-over-another-import", lambda r, t: ["import", jsonl(t / "d.jsonl", with_record("dplus", 1, question="changed")),
                                                 "--out", str(r.root / "staging")],
     ["exists, written by another import", "--force"]),
    # export
    ("export-over-its-input", lambda r, t: ["export", str(r.datasets / "dplus"), "--out",
                                            str(r.datasets / "dplus" / "train-00000-of-00001.parquet")],
     ["--out", "one of the files being exported"]),
    ("export-into-a-round", lambda r, t: ["export", str(r.datasets / "dplus"), "--out", str(r.cfg.layout(1).folder / "d.jsonl")],
     ["--out", "round folder"]),
    ("export-no-parquet", lambda r, t: ["export", str((t / "none").mkdir() or t / "none"), "--out", str(t / "o.jsonl")],
     ["no parquet files"]),
    ("export-unknown-dataset", lambda r, t: ["export", str(r.datasets), "--dataset", "bogus", "--out", str(t / "o.jsonl")],
     ["'--dataset'"]),
    ("export-model-not-an-adapter", lambda r, t: ["export-model", str(r.datasets), "--out", str(t / "merged")],
     ["ADAPTER_DIR", "no adapter_config.json"]),
    ("export-model-over-a-folder", lambda r, t: ["export-model", str(Path(write(t / "a" / "adapter_config.json", "{}")).parent),
                                                 "--out", str(r.cfg.layout(1).folder)],
     ["--out", "not empty", "--force"]),
    # resume
    ("resume-missing-run", lambda r, t: ["resume", str(t / "runs" / "nope"), "--round", "1"], ["folder does not exist"]),
    ("resume-round-never-started", lambda r, t: ["resume", str(r.run), "--round", "5"],
     ["--round 5", "never started", "reflectevo evolve"]),
    ("resume-round-0", lambda r, t: ["resume", str(r.run), "--round", "0"], ["'--round'"]),
    ("resume-bad-result-storage", lambda r, t: ["resume", str(r.run), "--round", "1", "--result-storage", "not a slug"],
     ["--result-storage", "neither a directory"]),
]


def assert_rejected(result, expected: list[str], code: int = 2) -> str:
    """Exit `code`, no traceback, exactly one line starting with 'error' that names every `expected` part."""
    output = result.output
    assert result.exit_code == code, output
    assert "Traceback" not in output and (result.exception is None or isinstance(result.exception, SystemExit)), output
    errors = [line for line in output.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1, output
    for part in expected:
        assert part in errors[0], f"{part!r} not in {errors[0]!r}"
    return errors[0]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(case, finished_run, tmp_path):
    _, build, expected = case
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = CliRunner().invoke(app, build(finished_run, scratch))
    assert_rejected(result, expected)
    assert finished_run.untouched()
    assert not finished_run.cfg.layout(2).folder.exists()  # e.g. --engine bogus once wrote round-2/config.json


def test_there_are_at_least_twenty_cases_over_every_command():
    assert len(CASES) >= 20
    assert {c[0].split("-")[0] for c in CASES} == {"evolve", "verify", "import", "export", "resume"}


def test_force_replaces_another_imports_file_and_the_same_import_twice_needs_none(finished_run, tmp_path):
    out = finished_run.root / "staging"
    same = CliRunner().invoke(app, ["import", str(OFFICIAL / "official_dplus.jsonl"), "--out", str(out)])
    assert same.exit_code == 0, same.output
    changed = jsonl(tmp_path / "d.jsonl", with_record("dplus", 1, question="changed"))
    forced = CliRunner().invoke(app, ["import", changed, "--out", str(out), "--force"])
    assert forced.exit_code == 0, forced.output
    assert finished_run.snapshot() != finished_run.before  # replaced, as asked
    assert {k: v for k, v in finished_run.snapshot().items() if k.startswith("runs")} == {
        k: v for k, v in finished_run.before.items() if k.startswith("runs")}


def test_a_second_evolve_of_a_held_lineage_refuses_at_once(finished_run):
    """Another process holds the lineage lock: evolve names it and exits 2 without starting anything."""
    lock = finished_run.run / ".lineage.lock"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, sys, time
        fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b'{{"pid": %d}}' % os.getpid())
        print("held", flush=True)
        time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = finished_run.snapshot()
        result = CliRunner().invoke(app, evolve(finished_run, "--model", "tiny"))
        line = assert_rejected(result, ["already being run", str(holder.pid), "--name"])
        assert "lineage" in line and finished_run.snapshot() == before
    finally:
        holder.kill()
        holder.wait()


def test_validation_runs_before_prefect_is_imported(finished_run, tmp_path):
    """In a fresh process, a bad flag exits 2 without importing prefect (no server start, no 20-40 s wait)."""
    probe = textwrap.dedent("""
        import atexit, sys
        atexit.register(lambda: print("prefect imported:", "prefect" in sys.modules))
        from cli.app import app
        app()
    """)
    done = subprocess.run([sys.executable, "-c", probe, *evolve(finished_run, "--engine", "bogus")],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2],
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert done.returncode == 2, done.stderr
    assert "prefect imported: False" in done.stdout
    assert done.stderr.startswith("error: --engine") and "Traceback" not in done.stderr
    assert finished_run.untouched()
