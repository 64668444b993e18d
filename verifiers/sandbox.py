"""Run model-written Python against assert tests in a bubblewrap sandbox, with a verdict the code cannot forge.

Each run is one fresh sandbox (nothing is reused between programs):

    prlimit --cpu --as --nproc --fsize --nofile --core   limits on the whole tree, soft = hard
      setpriv --reuid U --regid U --clear-groups --      real uid U (unprivileged): RLIMIT_NPROC applies
        bwrap --unshare-all --die-with-parent --new-session --clearenv --remount-ro /
              read-only /usr (+ the /bin, /lib, /lib64 links), tmpfs /tmp, /proc, /dev,
              read-only /sandbox/harness.py, a private writable /work holding candidate.py
          /usr/bin/python3 -I -S -B -u /sandbox/harness.py SECRET_FD RESULT_FD

a wall-clock limit enforced here, and the whole process group SIGKILLed afterwards. The rlimits are set by
prlimit(1) rather than a `preexec_fn`: a preexec_fn is unsafe in a threaded caller (Prefect's task threads,
verify_many's pool) and forces a full fork() of this process, about 4 ms per program. The network namespace is
empty, the host's files other than /usr are not there, and the PID namespace dies with the harness, taking
any process the candidate left behind with it.

The verdict comes from the judge half of `verifiers/sandbox_harness.py` (see its docstring for why it cannot be
forged), tagged with a per-run nonce that only the judge ever learns. Debian's /usr/bin/python3 runs the code:
the project's own interpreter may live under /root, which the sandbox uid cannot read. `-S` skips `site`
(about 10 ms per run; the code gets the standard library only); `-u` so output printed just before a kill is
kept for the feedback.

Requires `bwrap` (Debian package `bubblewrap`); without it `SandboxUnavailable` is raised: code is never run
unsandboxed.
"""

from __future__ import annotations

import ast
import builtins
import fcntl
import marshal
import os
import queue
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

PYTHON = "/usr/bin/python3"
HARNESS = Path(__file__).with_name("sandbox_harness.py")
# One uid per concurrent run, so one program's fork bomb (RLIMIT_NPROC counts per uid) cannot starve another's.
SANDBOX_UIDS = tuple(range(65534, 65526, -1))
_FREE_UIDS: queue.SimpleQueue[int] = queue.SimpleQueue()
for _uid in SANDBOX_UIDS:
    _FREE_UIDS.put(_uid)

Status = Literal["correct", "wrong", "runtime_error", "timeout"]


class SandboxUnavailable(RuntimeError):
    """bwrap is missing: we refuse to run model-written code rather than run it unsandboxed."""


@dataclass(frozen=True)
class Limits:
    """Per-program limits. `wall_s` bounds the whole run, sandbox start included (~20 ms)."""

    wall_s: float = 5.0
    cpu_s: int = 4
    memory_mb: int = 512  # address space of each process
    processes: int = 32  # per sandbox uid
    file_mb: int = 16  # largest file the program may write, its captured output included
    open_files: int = 64
    output_bytes: int = 4096  # tail of stdout+stderr kept for rich feedback


@dataclass(frozen=True)
class RunResult:
    status: Status
    detail: str  # the judge's reason: which test failed and how, or the traceback; empty when unknown
    output: str  # tail of the program's stdout+stderr
    seconds: float


# --------------------------------------------------------------------------------------------------------------
# splitting tests between the judge and the candidate's process

_BUILTIN_NAMES = frozenset(dir(builtins)) | {"math"}
_JUDGE_EVALUATES = (ast.Compare, ast.BoolOp, ast.UnaryOp, ast.BinOp, ast.Tuple, ast.List, ast.Set)


def defined_names(code: str) -> set[str]:
    """Names a program binds (def, class, assignment, `from m import x`, `import m as x`); empty if it does not
    parse. A plain `import math` is left out: it binds the very module the judge has under that name."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Import):
            names.update(alias.asname for alias in node.names if alias.asname)
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def plan_test(test: str, untrusted: set[str]) -> tuple[str, list]:
    """Split one test into what the candidate's process evaluates and what the judge evaluates.

    `assert f(3) == (1, 2)` becomes leaves `[("f(3)", "eval")]` and the judge's `_v0 == (1, 2)`: the expected
    value never enters the candidate's process and the comparison runs on plain data in the judge. A name the
    judge cannot resolve (anything but builtins and `math`, or one the program or setup code redefines) makes
    its sub-expression a leaf. Non-assert statements (`x = f(1)`) run in the candidate's process as they are.
    Limits of the guarantee: a comprehension that calls the program (`all(f(i) == i for i in r)`) and an
    expected value built by the setup code are evaluated next to the program, so a hostile program could forge
    those; MBPP's `assert f(...) == literal` tests have neither.
    Returns `(test, [(combine or None, [(leaf source, mode)])])`, the shape the harness reads.
    """
    trusted = _BUILTIN_NAMES - untrusted
    steps = []
    for stmt in ast.parse(test).body:
        if not isinstance(stmt, ast.Assert):
            steps.append((None, [(ast.unparse(stmt), "exec")]))
            continue
        leaves: list[tuple[str, str]] = []

        def split(node: ast.expr, as_argument: bool = False) -> ast.expr:
            if {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} <= trusted:
                return node
            if isinstance(node, ast.Call) and {n.id for n in ast.walk(node.func) if isinstance(n, ast.Name)} <= trusted:
                node.args = [split(a, True) for a in node.args]
                for kw in node.keywords:
                    kw.value = split(kw.value, True)
                return node
            if isinstance(node, _JUDGE_EVALUATES) and not isinstance(node, ast.Starred):
                for name, value in ast.iter_fields(node):
                    if isinstance(value, ast.expr):
                        setattr(node, name, split(value))
                    elif isinstance(value, list):
                        setattr(node, name, [split(v) if isinstance(v, ast.expr) else v for v in value])
                return node
            leaves.append((ast.unparse(node), "list" if as_argument else "eval"))
            return ast.Name(id=f"_v{len(leaves) - 1}", ctx=ast.Load())

        combine = ast.unparse(split(stmt.test))
        steps.append((combine, leaves))
    return test, steps


# --------------------------------------------------------------------------------------------------------------
# running


def _command(run_dir: Path, uid: int | None, secret_fd: int, result_fd: int, limits: Limits) -> list[str]:
    binds = ["--ro-bind", "/usr", "/usr"]
    for path in ("/bin", "/lib", "/lib64", "/etc/alternatives"):
        if os.path.islink(path):  # merged /usr: recreate the link instead of binding its target twice
            binds += ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            binds += ["--ro-bind", path, path]
    drop = ["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups", "--"] if uid is not None else []
    return [
        "prlimit", *_limit_flags(limits), "--", *drop, "bwrap", *binds,
        "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
        "--ro-bind", str(run_dir / "harness.py"), "/sandbox/harness.py",
        "--bind", str(run_dir / "work"), "/work", "--chdir", "/work",
        "--remount-ro", "/",  # the sandbox's own root tmpfs too: only /work and /tmp are writable
        "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
        "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/work",
        PYTHON, "-I", "-S", "-B", "-u", "/sandbox/harness.py", str(secret_fd), str(result_fd),
    ]  # fmt: skip


def _limit_flags(limits: Limits) -> list[str]:
    """prlimit(1) flags: soft = hard, so the program cannot raise them back."""
    pairs = {
        "cpu": limits.cpu_s,
        "as": limits.memory_mb << 20,
        "nproc": limits.processes,
        "fsize": limits.file_mb << 20,
        "nofile": limits.open_files,
        "core": 0,
    }
    return [f"--{name}={value}:{value}" for name, value in pairs.items()]


def _secret_pipe(payload: bytes) -> int:
    """A pipe already holding `payload` with its write end closed; returns the read end."""
    read_fd, write_fd = os.pipe()
    try:
        if len(payload) > 65536:
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, len(payload))  # up to /proc/sys/fs/pipe-max-size (1 MiB)
        os.write(write_fd, payload)
    except OSError as e:
        os.close(read_fd)
        raise ValueError(f"tests and setup code take {len(payload)} bytes, more than a pipe holds: {e}") from None
    finally:
        os.close(write_fd)
    return read_fd


def _tail(path: Path, n: int) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - n))
        return f.read().decode("utf-8", errors="replace")


def _read_until(fd: int, deadline: float, limit: int = 1 << 16) -> tuple[bytes, bool]:
    """What arrives on `fd` until end-of-file (True) or the deadline (False)."""
    data = b""
    while len(data) < limit:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return data, False
        chunk = os.read(fd, limit)
        if not chunk:
            return data, True
        data += chunk
    return data, True


def _wait_exit(pid: int, deadline: float) -> None:
    """Wait for `pid` to exit, at most until the deadline; a pidfd, because Popen.wait(timeout) polls with sleeps."""
    fd = os.pidfd_open(pid)
    try:
        select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
    finally:
        os.close(fd)


def run_python(code: str, tests: list[str], setup_code: str = "", limits: Limits = Limits()) -> RunResult:
    """Run `code`, then `setup_code`, then each assert in `tests`, sandboxed; 'correct' only if all tests pass.

    Raises `SandboxUnavailable` without bwrap and `SyntaxError` for a test that does not parse (a dataset bug,
    not the program's fault); everything the program does is a status.
    """
    if shutil.which("bwrap") is None:
        raise SandboxUnavailable(
            "bwrap not found: install bubblewrap (`apt-get install -y --no-install-recommends bubblewrap`); "
            "model-written code is never run outside the sandbox"
        )
    missing = [tool for tool in ("prlimit", "setpriv", PYTHON) if shutil.which(tool) is None]
    if missing:
        raise SandboxUnavailable(f"{', '.join(missing)} not found: install util-linux and python3 (Debian packages)")
    untrusted = defined_names(code) | defined_names(setup_code)
    nonce = secrets.token_hex(16)
    payload = marshal.dumps({"nonce": nonce, "setup": setup_code, "tests": [plan_test(t, untrusted) for t in tests]}, 4)
    uid = _FREE_UIDS.get() if os.geteuid() == 0 else None  # not root: we already are an unprivileged uid
    run_dir = Path(tempfile.mkdtemp(prefix="reflectevo-sandbox-"))
    secret_fd = result_read = result_write = None
    start = time.monotonic()
    try:
        run_dir.chmod(0o755)
        shutil.copyfile(HARNESS, run_dir / "harness.py")
        (run_dir / "work").mkdir(mode=0o700)
        (run_dir / "work" / "candidate.py").write_text(code, encoding="utf-8")
        if uid is not None:
            os.chown(run_dir / "work", uid, uid)
        secret_fd = _secret_pipe(payload)
        result_read, result_write = os.pipe()
        with open(run_dir / "output.txt", "wb") as output:
            proc = subprocess.Popen(
                _command(run_dir, uid, secret_fd, result_write, limits),
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env={},
                pass_fds=(secret_fd, result_write), start_new_session=True,
            )  # fmt: skip
        os.close(result_write)
        result_write = None
        deadline = start + limits.wall_s
        data, finished = _read_until(result_read, deadline)
        if finished:  # after a verdict bwrap exits by itself within milliseconds and reaps its namespace's init
            _wait_exit(proc.pid, deadline)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # bwrap and everything under it: --die-with-parent does the rest
        except ProcessLookupError:
            pass
        proc.wait()
        seconds = time.monotonic() - start
        output_tail = _tail(run_dir / "output.txt", limits.output_bytes)
        try:
            got_nonce, status, detail = ast.literal_eval(data.decode("utf-8", errors="replace").strip())
        except (ValueError, SyntaxError, TypeError):
            got_nonce = status = detail = None
        if got_nonce is not None and secrets.compare_digest(str(got_nonce), nonce):
            return RunResult(status, str(detail), output_tail, seconds)
        if not finished:
            return RunResult("timeout", f"wall-clock limit of {limits.wall_s:g}s exceeded", output_tail, seconds)
        return RunResult("runtime_error", "the sandbox ended without a verdict", output_tail, seconds)
    finally:
        for fd in (secret_fd, result_read, result_write):
            if fd is not None:
                os.close(fd)
        shutil.rmtree(run_dir, ignore_errors=True)
        if uid is not None:
            _FREE_UIDS.put(uid)
