"""Run model-written Python against assert tests in a bubblewrap sandbox, with a verdict the code cannot forge.

Each run is one fresh sandbox (nothing is reused between programs):

    prlimit --cpu --as --nproc --fsize --nofile --core   limits on every process, soft = hard
      setpriv --reuid U --regid U --clear-groups --      real uid U (unprivileged): RLIMIT_NPROC applies
        bwrap --unshare-all --die-with-parent --new-session --clearenv --remount-ro / --seccomp FD
              read-only /usr (+ the /bin, /lib, /lib64 links), /proc, a read-only /dev, and three tmpfs of
              `Limits.disk_mb` each: /tmp, /dev/shm and /work (holding a read-only candidate.py);
              read-only /sandbox/harness.pyc
          /usr/bin/python3 -I -S -B -u /sandbox/harness.pyc SECRET_FD RESULT_FD

a wall-clock limit enforced here, and the whole process group SIGKILLed afterwards. Nothing the program can
write is on the host's disk: the only writable paths are the size-capped tmpfs above (the program's code and
the harness are copied in by bwrap from memfds), and its captured output is capped by RLIMIT_FSIZE. Memory is
bounded by RLIMIT_AS per process (so `processes * memory_mb` per program) plus the tmpfs caps: the seccomp
filter refuses memfd_create and SysV shmget, whose memory neither bounds (one process held ~1 GB in 58
memfds), and any syscall of another ABI (x32, i386), through which those two could be reached. The rlimits
are set by prlimit(1) rather than a `preexec_fn`: a preexec_fn is unsafe in a threaded caller (Prefect's task
threads, verify_many's pool) and forces a full fork() of this process, about 4 ms per program. The network
namespace is empty, the host's files other than /usr are not there, and the PID namespace dies with the
harness, taking any process the candidate left behind with it.

The verdict comes from the judge half of `verifiers/sandbox_harness.py` (see its docstring for why the program
can neither forge it nor change what a test means), tagged with a per-run nonce that only the judge ever
learns. Debian's /usr/bin/python3 runs the code: the project's own interpreter may live under /root, which the
sandbox uid cannot read. `-S` skips `site` (about 10 ms per run; the code gets the standard library only); `-u`
so output printed just before a kill is kept for the feedback. The harness goes in compiled (by that same
interpreter, once per process): compiling its source costs 5-15 ms per run.

Requires `bwrap` (Debian package `bubblewrap`); without it `SandboxUnavailable` is raised: code is never run
unsandboxed.
"""

from __future__ import annotations

import ast
import builtins
import errno
import fcntl
import functools
import json
import os
import platform
import queue
import secrets
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from reflectevo.errors import SetupError

PYTHON = "/usr/bin/python3"
HARNESS = Path(__file__).with_name("sandbox_harness.py")
# One uid per concurrent run, so one program's fork bomb (RLIMIT_NPROC counts per uid) cannot starve another's.
SANDBOX_UIDS = tuple(range(65534, 65526, -1))
_FREE_UIDS: queue.SimpleQueue[int] = queue.SimpleQueue()
for _uid in SANDBOX_UIDS:
    _FREE_UIDS.put(_uid)
_BUILTIN_NAMES = frozenset(dir(builtins))

Status = Literal["correct", "wrong", "runtime_error", "timeout", "unverifiable"]


class SandboxUnavailable(SetupError):
    """bwrap is missing: we refuse to run model-written code rather than run it unsandboxed. Rerunning cannot
    help, so a task never retries it and the CLI exits 2."""


@dataclass(frozen=True)
class Limits:
    """Per-program limits. `wall_s` bounds the whole run, sandbox start included (~20 ms)."""

    wall_s: float = 5.0
    cpu_s: int = 4  # CPU time of each process
    memory_mb: int = 512  # address space of each process
    processes: int = 32  # per sandbox uid
    file_mb: int = 16  # largest file the program may write, its captured output included
    disk_mb: int = 32  # size of each writable tmpfs: /tmp, /work and /dev/shm
    open_files: int = 64
    output_bytes: int = 4096  # tail of stdout+stderr kept for rich feedback


@dataclass(frozen=True)
class RunResult:
    status: Status
    detail: str  # the judge's reason: which test failed and how, or the traceback; empty when unknown
    output: str  # tail of the program's stdout+stderr
    seconds: float
    limit: str = ""  # the sandbox limit the program hit, in words ("the 512 MB address-space cap per process")


# --------------------------------------------------------------------------------------------------------------
# which names of a test are the program's


@dataclass(frozen=True)
class SplitNames:
    program: list[str]  # names the tests read and leave to the program: bound to its objects in the judge
    modules: list[str]  # standard modules the tests use as `module.attr`: the judge's own, imported there


def split_names(sources: list[str]) -> SplitNames:
    """Split the names that tests (and setup code) read but do not bind themselves.

    `assert math.isclose(volume_cone(5, 12), 314.15, rel_tol=0.001)` reads `math` and `volume_cone`: `math`
    (a standard module, used only as `math.x`) is the judge's, `volume_cone` is the program's. Builtins are
    always the judge's: a program that defines its own `abs`, `all` or `math` does not change what the test
    means. Raises SyntaxError for a source that does not parse.
    """
    loads: dict[str, int] = {}
    as_attribute_base: dict[str, int] = {}
    bound: set[str] = set()
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Name):
                if isinstance(node.ctx, ast.Load):
                    loads[node.id] = loads.get(node.id, 0) + 1
                else:
                    bound.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                as_attribute_base[node.value.id] = as_attribute_base.get(node.value.id, 0) + 1
            elif isinstance(node, ast.arg):
                bound.add(node.arg)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bound.add(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                bound.add(node.name)
    free = set(loads) - bound
    modules = {n for n in free if n in sys.stdlib_module_names and as_attribute_base.get(n) == loads[n]}
    return SplitNames(program=sorted(free - modules - _BUILTIN_NAMES), modules=sorted(modules))


# --------------------------------------------------------------------------------------------------------------
# running


def _command(uid: int | None, fds: dict[str, int], limits: Limits) -> list[str]:
    binds = ["--ro-bind", "/usr", "/usr"]
    for path in ("/bin", "/lib", "/lib64", "/etc/alternatives"):
        if os.path.islink(path):  # merged /usr: recreate the link instead of binding its target twice
            binds += ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            binds += ["--ro-bind", path, path]
    drop = ["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups", "--"] if uid is not None else []
    size = str(limits.disk_mb << 20)
    return [
        "prlimit", *_limit_flags(limits), "--", *drop, "bwrap", *binds,
        "--proc", "/proc", "--dev", "/dev",
        "--size", size, "--tmpfs", "/dev/shm", "--remount-ro", "/dev",  # else /dev is an uncapped tmpfs
        "--size", size, "--tmpfs", "/tmp",
        "--size", size, "--tmpfs", "/work",
        "--ro-bind-data", str(fds["code"]), "/work/candidate.py",
        "--ro-bind-data", str(fds["harness"]), "/sandbox/harness.pyc",
        "--chdir", "/work",
        "--remount-ro", "/",  # the sandbox's own root tmpfs too: only the capped tmpfs are writable
        "--seccomp", str(fds["seccomp"]),
        "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
        "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/work",
        PYTHON, "-I", "-S", "-B", "-u", "/sandbox/harness.pyc", str(fds["secret"]), str(fds["result"]),
    ]  # fmt: skip


_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_MEMFD_CREATE_AND_SHMGET = {"x86_64": (319, 29), "aarch64": (279, 194)}


def _seccomp_filter(machine: str) -> bytes:
    """A classic-BPF seccomp program (bwrap --seccomp): EPERM for memfd_create, shmget and foreign ABIs."""
    if machine not in _AUDIT_ARCH:
        raise SandboxUnavailable(f"no seccomp filter for {machine!r}; known: {sorted(_AUDIT_ARCH)}")
    load, jump_eq, jump_ge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_JMP|JGE|K, BPF_RET|K
    deny, allow = 0x00050000 | errno.EPERM, 0x7FFF0000  # SECCOMP_RET_ERRNO | EPERM, SECCOMP_RET_ALLOW
    memfd_create, shmget = _MEMFD_CREATE_AND_SHMGET[machine]
    program = [
        (load, 0, 0, 4),  # seccomp_data.arch
        (jump_eq, 1, 0, _AUDIT_ARCH[machine]),
        (ret, 0, 0, deny),
        (load, 0, 0, 0),  # seccomp_data.nr
        (jump_ge, 3, 0, 0x40000000),  # the x32 ABI's numbers
        (jump_eq, 2, 0, memfd_create),
        (jump_eq, 1, 0, shmget),
        (ret, 0, 0, allow),
        (ret, 0, 0, deny),
    ]
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in program)


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


def _data_fd(data: bytes) -> int:
    """A memfd holding `data`, for bwrap's --ro-bind-data: no file on the host's disk."""
    fd = os.memfd_create("reflectevo-sandbox", os.MFD_CLOEXEC)  # pass_fds makes it inheritable for bwrap only
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _tail(f, n: int) -> str:
    f.seek(max(0, os.fstat(f.fileno()).st_size - n))
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
    """Run `code`, then `setup_code`, then `tests` (judged as in the harness), sandboxed; 'correct' only if all
    tests pass.

    Raises `SandboxUnavailable` without bwrap and `SyntaxError` for tests or setup code that do not parse (a
    dataset bug, not the program's fault); everything the program does is a status. Tests that read none of
    the program's names would pass for any program: they are 'unverifiable' without running anything.
    """
    if shutil.which("bwrap") is None:
        raise SandboxUnavailable(
            "bwrap not found: install bubblewrap (`apt-get install -y --no-install-recommends bubblewrap`); "
            "model-written code is never run outside the sandbox"
        )
    missing = [tool for tool in ("prlimit", "setpriv", PYTHON) if shutil.which(tool) is None]
    if missing:
        raise SandboxUnavailable(f"{', '.join(missing)} not found: install util-linux and python3 (Debian packages)")
    names = split_names([*tests, setup_code])
    if not names.program:
        return RunResult("unverifiable", "the tests read none of the program's names: any program would pass", "", 0.0)
    nonce = secrets.token_hex(16)
    payload = {"nonce": nonce, "setup": setup_code, "tests": tests, "names": names.program, "modules": names.modules,
               "limits": asdict(limits)}  # fmt: skip
    uid = _FREE_UIDS.get() if os.geteuid() == 0 else None  # not root: we already are an unprivileged uid
    fds: dict[str, int] = {}
    start = time.monotonic()
    try:
        fds["code"] = _data_fd(code.encode("utf-8", errors="replace"))  # a lone surrogate is not the judge's error
        fds["harness"] = _data_fd(_harness_bytecode())
        fds["seccomp"] = _data_fd(_seccomp_filter(platform.machine()))
        fds["secret"] = _secret_pipe(json.dumps(payload).encode())
        result_read, fds["result"] = os.pipe()
        fds["result_read"] = result_read
        with tempfile.TemporaryFile() as output:
            proc = subprocess.Popen(
                _command(uid, fds, limits), stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                env={}, pass_fds=[fds[k] for k in _PASSED], start_new_session=True,
            )  # fmt: skip
            for key in _PASSED:
                os.close(fds.pop(key))
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
            output_tail = _tail(output, limits.output_bytes)
        try:
            got_nonce, status, detail, limit = ast.literal_eval(data.decode("utf-8", errors="replace").strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            got_nonce = status = detail = limit = None
        if got_nonce is not None and secrets.compare_digest(str(got_nonce), nonce):
            return RunResult(status, str(detail), output_tail, seconds, str(limit))
        if not finished:
            cap = f"the wall-clock limit of {limits.wall_s:g}s"
            return RunResult("timeout", f"{cap} exceeded", output_tail, seconds, cap)
        return RunResult("runtime_error", "the sandbox ended without a verdict", output_tail, seconds)
    finally:
        for fd in fds.values():
            os.close(fd)
        if uid is not None:
            _FREE_UIDS.put(uid)


@functools.cache
def _harness_bytecode() -> bytes:
    """The harness as a .pyc for the sandbox's interpreter (which may differ from ours): the magic number, 12
    bytes that running a .pyc as a script skips, the marshalled code."""
    compile_it = (
        "import importlib.util, marshal, sys; code = compile(sys.stdin.read(), '/sandbox/harness.py', 'exec'); "
        "sys.stdout.buffer.write(importlib.util.MAGIC_NUMBER + bytes(12) + marshal.dumps(code))"
    )
    return subprocess.run([PYTHON, "-I", "-S", "-c", compile_it], input=HARNESS.read_bytes(), capture_output=True,
                          check=True, env={}).stdout  # fmt: skip


_PASSED = ("code", "harness", "seccomp", "secret", "result")  # the fds bwrap gets; closed here once it has them
