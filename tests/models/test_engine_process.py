"""The spawned worker process behind the vLLM engine, and engine release before training; no vLLM needed."""

from __future__ import annotations

import os
import signal
from fractions import Fraction

import pytest

from models.engines import REGISTRY, load_engine, release_engines
from models.engines.process import WorkerError, WorkerProcess
from reflectevo.config import EngineConfig


class TestWorkerProcess:
    def test_methods_run_on_the_object_built_in_the_child(self):
        worker = WorkerProcess("fractions:Fraction", 3, 4)
        try:
            assert worker.call("__add__", Fraction(1, 4)) == 1
            child = worker._process
            assert child.pid is not None and child.is_alive()
        finally:
            worker.close()
        assert not child.is_alive() and worker._process is None

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

    def test_a_failed_start_names_the_factory_and_the_cause(self):
        worker = WorkerProcess("fractions:NoSuchThing")
        with pytest.raises(WorkerError, match=r"starting fractions:NoSuchThing(.|\n)*AttributeError"):
            worker.call("anything")
        assert worker._process is None


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
