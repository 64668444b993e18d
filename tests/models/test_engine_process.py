"""The spawned worker process behind the vLLM engine, and engine release before training; no vLLM needed."""

from __future__ import annotations

import os
import signal
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from pydantic import ValidationError

from models.engines import REGISTRY, load_engine, release_engines, resolve_engine_name, vllm_installed
from models.engines.process import WorkerError, WorkerProcess
from reflectevo.config import EngineConfig


class TestWorkerProcess:
    def test_methods_run_on_the_object_built_in_the_child(self):
        worker = WorkerProcess("fractions:Fraction", 3, 4)
        try:
            assert worker.call("__add__", Fraction(1, 4)) == 1
            child = worker._process
            assert child.poll() is None
        finally:
            worker.close()
        assert child.poll() is not None and worker._process is None

    def test_an_exception_in_the_child_is_raised_here_with_its_traceback(self):
        worker = WorkerProcess("fractions:Fraction", 3, 4)
        try:
            with pytest.raises(WorkerError, match="ZeroDivisionError"):
                worker.call("__truediv__", 0)
            assert worker.call("__mul__", 2) == Fraction(3, 2)  # the worker survives a failed call
        finally:
            worker.close()

    def test_a_dead_child_is_reported_and_replaced_on_the_next_call(self):
        worker = WorkerProcess("fractions:Fraction", 3, 4)
        try:
            worker.call("__mul__", 2)
            os.kill(worker._process.pid, signal.SIGKILL)
            with pytest.raises(WorkerError, match="died"):
                worker.call("__mul__", 2)
            assert worker.call("__mul__", 2) == Fraction(3, 2)
        finally:
            worker.close()

    def test_the_child_runs_under_the_interpreter_it_is_given(self, tmp_path):
        # Another interpreter (here: this one under another name) must find this module without the project
        # installed in its environment: the worker puts the project on its path.
        python = tmp_path / "python"
        python.symlink_to(sys.executable)
        worker = WorkerProcess("fractions:Fraction", 3, 4, python=str(python))
        try:
            assert worker.call("__add__", Fraction(1, 4)) == 1
            assert Path(f"/proc/{worker._process.pid}/cmdline").read_bytes().split(b"\0")[0] == str(python).encode()
        finally:
            worker.close()

    def test_a_missing_interpreter_is_named(self, tmp_path):
        worker = WorkerProcess("fractions:Fraction", python=str(tmp_path / "no-python"))
        with pytest.raises(WorkerError, match="no-python"):
            worker.call("anything")
        assert worker._process is None

    def test_a_failed_start_names_the_factory_and_the_cause(self):
        worker = WorkerProcess("fractions:NoSuchThing")
        with pytest.raises(WorkerError, match=r"starting fractions:NoSuchThing(.|\n)*AttributeError"):
            worker.call("anything")
        assert worker._process is None


class TestVllmPython:
    """engine.vllm_python: generation in another environment's interpreter, chosen by config or environment."""

    def test_it_defaults_to_the_environment_variable_and_makes_auto_pick_vllm(self, monkeypatch, tmp_path):
        python = tmp_path / "bin" / "python"
        python.parent.mkdir()
        python.symlink_to(sys.executable)
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("REFLECTEVO_VLLM_PYTHON", "bin/python")
        config = EngineConfig()
        assert config.vllm_python == str(python)  # absolute, and not resolved past the environment's symlink
        assert resolve_engine_name(config) == "vllm"
        assert resolve_engine_name(EngineConfig(name="transformers")) == "transformers"

    def test_without_it_auto_follows_what_is_importable_here(self, monkeypatch):
        monkeypatch.delenv("REFLECTEVO_VLLM_PYTHON", raising=False)
        expected = "vllm" if vllm_installed() else "transformers"
        assert EngineConfig().vllm_python is None and resolve_engine_name(EngineConfig()) == expected

    def test_a_path_that_is_no_interpreter_is_refused_with_the_fix(self, tmp_path):
        with pytest.raises(ValidationError, match=r"vllm_python(.|\n)*not an executable Python: build it with "
                                                  r"scripts/setup-vllm-cpu.sh"):
            EngineConfig(vllm_python=str(tmp_path))


class ClosableEngine:
    closed: list[str] = []

    def __init__(self, model_path, adapter=None, config=None):
        self.model_path = model_path

    def close(self):
        ClosableEngine.closed.append(self.model_path)


class TestReleaseEngines:
    def test_a_new_model_or_release_closes_the_cached_engine(self, monkeypatch):
        monkeypatch.setitem(REGISTRY, "transformers", f"{__name__}:ClosableEngine")
        config = EngineConfig(name="transformers")
        first = load_engine(config, "a", None)
        assert load_engine(config, "a", None) is first and ClosableEngine.closed == []
        load_engine(config, "b", None)
        assert ClosableEngine.closed == ["a"]
        release_engines()
        assert ClosableEngine.closed == ["a", "b"]
