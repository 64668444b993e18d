"""Errors raised inside a run: one line with the cause and the log file holding the traceback; exit 2 for
permanent errors, 1 for incidents; the busy-machine defaults are set before prefect is imported."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli.app import guarded
from reflectevo.errors import DataError

ROOT = Path(__file__).parents[2]


def run_raising(error: Exception):
    app = typer.Typer()

    @app.command("boom")
    @guarded
    def boom_command(flag: int = 1) -> None:
        raise error

    app.command("noop")(lambda: None)
    return CliRunner().invoke(app, ["boom"])


def error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error:")]


def test_an_incident_is_one_line_naming_the_cause_and_the_log(tmp_path):
    result = run_raising(RuntimeError("CUDA out of memory\nwhile generating shard 3"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = error_lines(result)
    assert "RuntimeError: CUDA out of memory while generating shard 3" in line
    log = Path(line.split("full log: ")[1].rstrip(")"))
    try:
        text = log.read_text()
        assert "Traceback" in text and "CUDA out of memory" in text
    finally:
        log.unlink()


def test_a_permanent_error_inside_a_run_exits_2_without_a_log():
    result = run_raising(DataError("shard.parquet, line 4, field 'answer': expected a string"))
    assert result.exit_code == 2
    assert error_lines(result) == ["error: shard.parquet, line 4, field 'answer': expected a string"]


def test_a_server_that_does_not_start_says_how_to_use_a_running_one():
    result = run_raising(RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server."))
    assert result.exit_code == 1
    (line,) = error_lines(result)
    assert "PREFECT_API_URL=http://127.0.0.1:4200/api" in line and "prefect server start" in line
    Path(line.split("full log: ")[1].rstrip(")")).unlink()


@pytest.mark.parametrize("user_env, timeout, analytics", [
    ({}, "180", "false"),
    ({"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "600", "PREFECT_SERVER_ANALYTICS_ENABLED": "true"},
     "600", "true"),
])
def test_busy_machine_defaults_are_set_before_prefect_and_user_settings_win(user_env, timeout, analytics):
    probe = textwrap.dedent("""
        import os, sys
        import cli.app
        from prefect.settings import get_current_settings
        s = get_current_settings().server
        print(s.ephemeral.startup_timeout_seconds, str(s.analytics_enabled).lower())
    """)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "PREFECT_SERVER_ANALYTICS_ENABLED")}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**env, **user_env, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"{timeout} {analytics}"


def test_a_long_error_is_cut_to_one_short_line_and_a_pydantic_one_names_its_first_field():
    from pydantic import BaseModel

    class M(BaseModel):
        a: float
        b: float

    try:
        M.model_validate({"a": None, "b": None})
    except Exception as e:
        pydantic_error = e
    result = run_raising(pydantic_error)
    (line,) = error_lines(result)
    assert "2 validation error(s) for M; first: a: Input should be a valid number (got None)" in line
    Path(line.split("full log: ")[1].rstrip(")")).unlink()
    (line,) = error_lines(run_raising(RuntimeError("x" * 5000)))
    assert len(line) < 500
    Path(line.split("full log: ")[1].rstrip(")")).unlink()
