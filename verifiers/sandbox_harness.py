"""Test harness that runs inside the sandbox, under Debian's python3 (stdlib only: our package is not mounted there).

Why two processes: the candidate's code can do anything inside its own interpreter (patch builtins, return objects
whose `__eq__` is always true, `os._exit(0)`, print fake markers), so no check that runs next to it can be
trusted. So this trusted process (the judge) forks the candidate's process first, while it still holds no
secret, and then:

- reads the per-run nonce and the tests from a pipe the candidate's process has closed (and that bwrap's init
  does not hold), after making itself non-dumpable so the candidate cannot read its memory or file descriptors
  through /proc or ptrace;
- sends the candidate's process only the sub-expressions of each assert that need the candidate's names
  ("leaves", e.g. `f(3, 4)`, split by `verifiers.sandbox.plan_test`), never the expected values;
- gets each leaf back as `marshal` data, which only exists for exact built-in types (no subclasses, no
  user objects), and evaluates the rest of the assert (`_v0 == (4, 5)`) itself;
- writes `repr((nonce, status, detail))` to a result pipe only it holds, after the last test.

The parent trusts a verdict only when the nonce matches. Protocol on all pipes: 4-byte big-endian length, then
marshal data. argv: secret fd, result fd.
"""

import marshal
import os
import sys

MAX_MESSAGE = 16 << 20  # a leaf value bigger than this is a failure, not a reason to exhaust the judge's memory
PLAIN_SCALARS = (int, float, complex, str, bytes, bool, type(None))


def _send(fd, obj):
    data = marshal.dumps(obj, 4)
    data = len(data).to_bytes(4, "big") + data
    while data:
        data = data[os.write(fd, data) :]


def _read_exactly(fd, n):
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError("pipe closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _recv(fd):
    n = int.from_bytes(_read_exactly(fd, 4), "big")
    if n > MAX_MESSAGE:
        raise ValueError(f"message of {n} bytes is over the {MAX_MESSAGE}-byte limit")
    return marshal.loads(_read_exactly(fd, n))


def _plain(value, depth=0):
    """True for built-in data only (exact types), so comparing it runs no code the candidate wrote."""
    kind = type(value)
    if kind in PLAIN_SCALARS:
        return True
    if depth > 200:
        return False
    if kind in (list, tuple, set, frozenset):
        return all(_plain(v, depth + 1) for v in value)
    if kind is dict:
        return all(_plain(k, depth + 1) and _plain(v, depth + 1) for k, v in value.items())
    return False


def _short(value, limit=300):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------------------------------------------
# the candidate's process


def _error_text():
    """The current exception's traceback without the harness's own frame: what the model's code did."""
    import traceback

    kind, error, tb = sys.exc_info()
    return "".join(traceback.format_exception(kind, error, tb.tb_next))[-4000:]


def _to_plain(value, depth=0):
    """Subclasses of built-in data as their base type (Counter -> dict, namedtuple -> tuple), where Python's
    `==` treats them alike; their own `__eq__` is dropped, so a subclass cannot make a wrong answer compare
    equal. Anything else (deque, range, user objects) stays as it is and marshal refuses it."""
    if type(value) in PLAIN_SCALARS or depth > 200:
        return value
    for base in (int, float, complex, str, bytes):
        if isinstance(value, base):
            return base(value)
    if isinstance(value, dict):
        return {_to_plain(k, depth + 1): _to_plain(v, depth + 1) for k, v in dict.items(value)}
    for base in (list, tuple, set, frozenset):
        if isinstance(value, base):
            return base(_to_plain(v, depth + 1) for v in base.__iter__(value))
    return value


def _candidate(requests, replies):
    """Serve the judge: run the candidate's code and the setup code, then evaluate the leaves it asks for."""
    namespace = {"__name__": "candidate", "__builtins__": __builtins__}
    setup = _recv(requests)
    for filename, source in (("/work/candidate.py", None), ("<test_setup_code>", setup)):
        try:
            if source is None:
                with open(filename, encoding="utf-8") as f:
                    source = f.read()
            exec(compile(source, filename, "exec"), namespace)
        except BaseException:  # SystemExit and KeyboardInterrupt too: the candidate does not decide how we exit
            _send(replies, ("error", f"{filename} raised:\n{_error_text()}"))
            return
    _send(replies, ("value", None))
    while True:
        source, mode = _recv(requests)
        try:
            if mode == "exec":
                exec(compile(source, "<test>", "exec"), namespace)
                value = None
            else:
                value = eval(compile(source, "<test>", "eval"), namespace)
                if mode == "list" and hasattr(value, "__next__"):  # list(f(x)) where f returns a generator
                    value = list(value)
        except BaseException:
            _send(replies, ("error", f"{source} raised:\n{_error_text()}"))
            continue
        try:
            _send(replies, ("value", _to_plain(value)))
        except BaseException:  # marshal refuses anything but exact built-in types
            _send(replies, ("opaque", f"{source} returned a {type(value).__name__}, which is not plain built-in data"))


# --------------------------------------------------------------------------------------------------------------
# the judge


def _judge(secret_fd, result_fd, requests, replies, child):
    import math

    namespace = {"__builtins__": __builtins__, "math": math}
    with os.fdopen(secret_fd, "rb") as f:
        secret = marshal.loads(f.read())
    nonce, tests = secret["nonce"], secret["tests"]

    def verdict(status, detail=""):
        with os.fdopen(result_fd, "w") as out:
            out.write(repr((nonce, status, detail)) + "\n")
        try:
            os.kill(child, 9)
        except ProcessLookupError:  # already reaped
            pass
        os._exit(0)  # skip interpreter teardown: bwrap and the caller wait for this exit

    def ask(message):
        """Send one request to the candidate's process; its reply, or a verdict if it died or broke protocol."""
        try:
            _send(requests, message)
            reply = _recv(replies)
        except (EOFError, BrokenPipeError):
            _, status = os.waitpid(child, 0)
            # SIGXCPU, or SIGKILL past the hard CPU limit: the candidate ran out of CPU time.
            if os.WIFSIGNALED(status) and os.WTERMSIG(status) in (24, 9):
                verdict("timeout", "CPU time limit exceeded")
            code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
            verdict("runtime_error", f"the candidate's process ended (status {code}) before the tests finished")
        except Exception as e:
            verdict("runtime_error", f"the candidate's process sent a malformed reply ({type(e).__name__}: {e})")
        if type(reply) is not tuple or len(reply) != 2:
            verdict("runtime_error", "the candidate's process sent a malformed reply")
        return reply

    tag, error = ask(secret["setup"])
    if tag != "value":
        verdict("runtime_error", str(error))
    for number, (test, steps) in enumerate(tests, start=1):
        for combine, leaves in steps:
            values = {}
            for k, (leaf, mode) in enumerate(leaves):
                tag, value = ask((leaf, mode))
                if tag == "error":
                    verdict("runtime_error", f"test {number}: {test}\n{value}")
                if tag != "value" or not _plain(value):
                    verdict("wrong", f"test {number}: {test}\n{leaf} did not return plain built-in data")
                values[f"_v{k}"] = value
            if combine is None:  # a statement such as `x = f(1)` before the assert
                continue
            try:
                passed = eval(combine, namespace, values)
            except Exception as e:
                verdict("wrong", f"test {number}: {test}\nraised {type(e).__name__}: {e}")
            if not (_plain(passed) and passed):
                got = ", ".join(f"{leaf} = {_short(values[f'_v{k}'])}" for k, (leaf, _) in enumerate(leaves))
                verdict("wrong", f"test {number}: {test}\nfailed" + (f" with {got}" if got else ""))
    verdict("correct", f"{len(tests)} tests passed")


def main():
    secret_fd, result_fd = int(sys.argv[1]), int(sys.argv[2])
    # Non-dumpable: the candidate runs as the same uid, and could otherwise open /proc/<judge>/mem or /fd/*,
    # or ptrace the judge. Called through _ctypes: `import ctypes` costs 3-10 ms, a third of a whole run.
    import _ctypes

    if _ctypes.call_function(_ctypes.dlsym(_ctypes.dlopen(None), "prctl"), (4, 0, 0, 0, 0)) != 0:  # PR_SET_DUMPABLE
        raise OSError("prctl(PR_SET_DUMPABLE, 0) failed")
    request_read, request_write = os.pipe()  # judge -> candidate's process
    reply_read, reply_write = os.pipe()  # candidate's process -> judge
    child = os.fork()
    if child == 0:
        for fd in (secret_fd, result_fd, request_write, reply_read):
            os.close(fd)
        try:
            _candidate(request_read, reply_write)
        finally:
            os._exit(0)
    for fd in (request_read, reply_write):
        os.close(fd)
    _judge(secret_fd, result_fd, request_write, reply_read, child)


if __name__ == "__main__":
    main()
