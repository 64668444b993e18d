"""A small pool of verifier worker processes that enforces a wall-clock limit per item by killing the worker.

Why processes and not threads: sympy (behind math-verify) can run for minutes on an adversarial answer such as
`9^9^9^9`, a thread cannot be stopped, and math-verify's own `signal.alarm` timeout only works in the main
thread, while Prefect calls us from worker threads. A hung item costs one worker, which is killed and replaced.

Why `subprocess` and not `multiprocessing`: the spawn/forkserver start methods re-import the caller's `__main__`
in every worker (a flow script importing torch costs seconds per worker), and fork is unsafe in a threaded
caller. A worker here is `python -m verifiers.pool TARGET...`, speaking one JSON object per line:

    -> {"ready": true}                                   once its preloaded verifiers are imported
    <- {"target": "verifiers.math:verify", "problem": {...}, "output": "...", "path": [caller's sys.path]}
    -> {"verdict": {...}}  or  {"error": "<traceback>"}
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from importlib import import_module

from reflectevo.schema import Problem, Verdict

STARTUP_TIMEOUT_S = 120.0  # importing sympy on a busy 2-core machine can take several seconds
WORKER_MEMORY_BYTES = 4 << 30  # address-space cap per worker, so a runaway expansion fails fast instead of swapping


@dataclass
class _Worker:
    proc: subprocess.Popen
    started: float
    ready: bool = False
    job: int | None = None  # index of the item being verified
    deadline: float = 0.0
    buffer: bytearray = field(default_factory=bytearray)

    def send(self, message: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:  # it died since the last read; the end-of-file on its stdout reports it
            pass

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:  # the pipe to a killed worker may already be broken
                pass


class WorkerPool:
    """`WorkerPool(2, ["verifiers.math:verify"]).run(jobs, timeout_s=10)`; safe to share between threads."""

    def __init__(self, processes: int, preload: list[str]):
        self.processes, self.preload = processes, preload
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()  # one batch at a time: the workers' pipes carry one conversation each

    def _spawn(self) -> _Worker:
        # The worker must import whatever the caller can: this package even when not installed, and (sent with
        # each item, as it may change while workers live) verifiers registered from other folders.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "verifiers.pool", *self.preload],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        )
        return _Worker(proc, started=time.monotonic())

    def run(self, jobs: list[tuple[str, Problem, str]], timeout_s: float) -> list[Verdict]:
        """One verdict per (target, problem, output), in order; an item over `timeout_s` gets status 'timeout'."""
        with self._lock:
            return self._run(jobs, timeout_s)

    def _run(self, jobs: list[tuple[str, Problem, str]], timeout_s: float) -> list[Verdict]:
        results: list[Verdict | None] = [None] * len(jobs)
        path = [p for p in sys.path if p]
        errors: list[str] = []
        pending = deque(range(len(jobs)))
        self._workers = [w for w in self._workers if w.proc.poll() is None]
        while len(self._workers) < min(self.processes, len(jobs)):
            self._workers.append(self._spawn())

        def replace(worker: _Worker) -> None:
            worker.kill()
            self._workers[self._workers.index(worker)] = self._spawn()

        while pending or any(w.job is not None for w in self._workers):
            for w in self._workers:
                if w.ready and w.job is None and pending:
                    w.job, w.deadline = pending.popleft(), time.monotonic() + timeout_s
                    target, problem, output = jobs[w.job]
                    w.send({"target": target, "problem": problem.model_dump(), "output": output, "path": path})
            deadlines = [w.deadline if w.ready else w.started + STARTUP_TIMEOUT_S for w in self._workers]
            with selectors.DefaultSelector() as sel:
                for w in self._workers:
                    sel.register(w.proc.stdout, selectors.EVENT_READ, w)
                events = sel.select(max(0.0, min(deadlines) - time.monotonic()))
            for key, _ in events:
                w = key.data
                chunk = os.read(w.proc.stdout.fileno(), 1 << 16)
                if not chunk:  # the worker died: a crash in C code, or the memory cap
                    if w.job is None:
                        raise RuntimeError(f"verifier worker exited with code {w.proc.wait()} before it was ready")
                    results[w.job] = Verdict(
                        status="runtime_error", reason=f"verifier process died (exit code {w.proc.wait()})"
                    )
                    w.job = None
                    replace(w)
                    continue
                w.buffer += chunk
                if b"\n" not in w.buffer:
                    continue
                line, _, rest = bytes(w.buffer).partition(b"\n")
                w.buffer = bytearray(rest)
                message = json.loads(line)
                if message.get("ready"):
                    w.ready = True
                elif "error" in message:
                    errors.append(f"item {w.job} ({jobs[w.job][0]}, problem {jobs[w.job][1].id!r}):\n{message['error']}")
                    results[w.job], w.job = Verdict(status="runtime_error", reason="verifier raised"), None
                else:
                    results[w.job], w.job = Verdict.model_validate(message["verdict"]), None
            now = time.monotonic()
            for w in list(self._workers):
                if w.ready and w.job is not None and now >= w.deadline:
                    results[w.job] = Verdict(
                        status="timeout", reason=f"verification took longer than {timeout_s:g}s; worker killed"
                    )
                    w.job = None
                    replace(w)
                elif not w.ready and now >= w.started + STARTUP_TIMEOUT_S:
                    w.kill()
                    raise RuntimeError(f"verifier worker did not start within {STARTUP_TIMEOUT_S:g}s")
        if errors:
            raise RuntimeError("a verifier raised instead of returning a Verdict (a bug):\n" + "\n".join(errors))
        return results

    def close(self) -> None:
        with self._lock:
            for w in self._workers:
                w.kill()
            self._workers = []


def _resolve(target: str):
    module, fn = target.split(":")
    return getattr(import_module(module), fn)


def _exit_with_parent() -> None:
    """Exit when the parent is gone, even mid-item (a closed stdin is only noticed between items)."""
    parent = os.getppid()
    while True:
        time.sleep(1)
        if os.getppid() != parent:
            os._exit(1)


def _serve(targets: list[str]) -> None:
    import resource
    import traceback

    resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    # Replies go to a private copy of stdout; anything a verifier prints lands on stderr, not in the protocol.
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    for target in targets:
        _resolve(target)
    replies.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        if sys.path != request["path"]:
            sys.path[:] = request["path"]
        try:
            verdict = _resolve(request["target"])(Problem.model_validate(request["problem"]), request["output"])
            reply = {"verdict": verdict.model_dump()}
        except Exception:
            reply = {"error": traceback.format_exc()}
        replies.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    _serve(sys.argv[1:])
