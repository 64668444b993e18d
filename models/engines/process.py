"""An object that lives in its own spawned process: the way an engine stage gives its GPU memory back.

Deleting a vLLM `LLM` does not reliably free GPU memory (vllm#1908, #16543), so a vLLM engine is built inside a
child process and only that process ever touches the accelerator. Ending the process frees everything, so the
training stage that follows gets the whole GPU. The child is started with `spawn`: vLLM itself spawns its engine
core and workers, and a forked child of a process that touched CUDA cannot re-initialise it (vllm#6152).

The child serves method calls one at a time over a pipe; arguments and results must be picklable.
"""

from __future__ import annotations

import atexit
import importlib
import multiprocessing
import multiprocessing.util  # registers its exit hook (which joins children) before ours, so ours runs first
import os
import signal
import threading
import traceback
import weakref
from typing import Any


class WorkerError(RuntimeError):
    """An exception raised inside the worker process, carrying the child's traceback as its message."""


def _serve(conn, factory: str, args: tuple, kwargs: dict) -> None:
    """Child side: build `factory(*args, **kwargs)`, then answer (method, args) requests until told to stop.

    The object's `close()`, if it has one, runs before the child exits: a multiprocessing child ends with
    `os._exit` and skips atexit hooks, which is where vLLM stops its engine-core process otherwise (left running,
    it keeps its memory). The child leads its own process group, so the parent can also end whatever the object
    started if the child itself dies.
    """
    os.setsid()
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
    """`factory(*args, **kwargs)` built in a spawned child process on first use, its methods called from here.

    `factory` is a "module:callable" string, so nothing of the object is imported in this process. Calls are
    serialised with a lock (Prefect may call from a task-runner thread). `close()` ends the child; it also runs at
    interpreter exit, before multiprocessing would wait forever for a child that is waiting for requests.
    """

    def __init__(self, factory: str, *args: Any, **kwargs: Any):
        self.factory, self.args, self.kwargs = factory, args, kwargs
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn = None
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
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        # Not a daemon: daemonic processes may not start children, and vLLM starts its own.
        process = ctx.Process(target=_serve, args=(child, self.factory, self.args, self.kwargs), daemon=False)
        process.start()
        child.close()
        self._process, self._conn = process, parent
        try:
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
            raise WorkerError(f"{what}: the worker process died (exit code {process.exitcode}); "
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
        process.join(timeout=60)
        if process.is_alive():
            process.terminate()
            process.join(timeout=10)
        try:  # whatever the child started and left behind (nothing, after a clean close)
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        conn.close()
