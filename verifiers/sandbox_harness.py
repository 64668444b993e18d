"""Test harness that runs inside the sandbox, under Debian's python3 (stdlib only: our package is not mounted there).

Why two processes: the candidate's code can do anything inside its own interpreter (rebind `math`, `abs` or
`all`, patch builtins, return objects whose `__eq__` is always true, `os._exit(0)`, print fake markers), so no
check that runs next to it can be trusted. So this trusted process (the judge) forks the candidate's process
first, while it still holds no secret, and then reads the per-run nonce and the tests from a pipe the
candidate's process has closed (and that bwrap's init does not hold), after making itself non-dumpable so the
candidate cannot read its memory or file descriptors through /proc or ptrace.

The judge runs each test itself, in a namespace of its own with the real builtins and standard modules: the
program's names that the tests read (found by `verifiers.sandbox.split_names`) are bound there to stand-ins,
`Remote`s. Calling one sends the call to the candidate's process, which runs the program's code and answers
with the return value as plain data (JSON of exact built-in types, see `encode`). So `==`, `math.isclose`,
`set(...)`, `sorted(..., key=lambda ...)`, loops, `if`-expressions and `all(<generator>)` all run in the judge,
on the judge's own values, whatever the program rebinds or returns. A value that is not plain data (an instance
of the program's class, a generator) stays in the candidate's process; the judge's `Remote` for it can be
called, passed back to the program, have an attribute or item read, be iterated or measured with `len` (the
answers come back as plain data again), and refuses everything else (`==`, `<`, `bool`, `hash`, `str`, ...),
which would let the program's code decide; a test that needs one of those is judged "unverifiable".

Why a forged reply gains nothing: every request carries a fresh random tag that the candidate's process only
sees once the request is sent, and the judge takes a reply only if it echoes that tag, so nothing the program
writes on the reply pipe ahead of time (at import, from a forked child) answers a later request; a reply with
the wrong tag ends the run as a runtime error. What the program can write while it handles a request is just a
return value for that call, which it could return anyway. The verdict itself goes to the parent on a result
pipe only the judge holds, as `repr((nonce, status, detail, limit))`, and the parent trusts it only when the
nonce matches.

Protocol on the judge <-> candidate pipes: 4-byte big-endian length, then JSON (ASCII).
argv: secret fd, result fd.
"""

import _json
import builtins
import os
import sys

MAX_MESSAGE = 16 << 20  # a reply bigger than this is a failure, not a reason to exhaust the judge's memory
MAX_DEPTH = 100  # deeper data stays in the candidate's process
SIGKILL, SIGXCPU, SIGXFSZ = 9, 24, 25
_ENDS_ITERATION = (StopIteration, StopAsyncIteration)
_SEQUENCE_TAGS = {list: "l", tuple: "t", set: "s", frozenset: "f"}
_SEQUENCE_TYPES = {tag: kind for kind, tag in _SEQUENCE_TAGS.items()}
_PLAIN_BASES = (int, float, complex, str, bytes, dict, list, tuple, set, frozenset)


# --------------------------------------------------------------------------------------------------------------
# plain data on the pipes


def encode(value, other, depth=0):
    """The JSON form of plain data: exact built-in types, containers as `["tag", item, ...]`; anything else is
    `other(value, depth)`'s to encode. Only exact types: iterating them runs no code the candidate wrote."""
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if depth < MAX_DEPTH:
        if kind in _SEQUENCE_TAGS:
            return [_SEQUENCE_TAGS[kind], *[encode(v, other, depth + 1) for v in value]]
        if kind is dict:
            return ["d", *[encode(x, other, depth + 1) for pair in value.items() for x in pair]]
        if kind is bytes:
            return ["b", value.hex()]
        if kind is complex:
            return ["c", value.real, value.imag]
        if kind is range:
            return ["R", value.start, value.stop, value.step]
    return other(value, depth)


def decode(data, other):
    """`encode`'s inverse, building only exact built-in types; a tag it does not know is `other(tag, items)`'s."""
    kind = type(data)
    if data is None or kind in (bool, int, float, str):
        return data
    if kind is not list or not data or type(data[0]) is not str:
        raise ValueError("not plain data")
    tag, items = data[0], data[1:]
    if tag in _SEQUENCE_TYPES:
        return _SEQUENCE_TYPES[tag]([decode(v, other) for v in items])
    if tag == "d" and len(items) % 2 == 0:
        values = [decode(v, other) for v in items]
        return dict(zip(values[::2], values[1::2]))
    if tag == "b" and len(items) == 1 and type(items[0]) is str:
        return bytes.fromhex(items[0])
    if tag == "c" and len(items) == 2 and all(type(v) in (int, float) for v in items):
        return complex(*items)
    if tag == "R" and len(items) == 3 and all(type(v) is int for v in items):
        return range(*items)
    return other(tag, items)


class _JSONSettings:
    """What json.JSONDecoder hands its C scanner. The harness uses `_json` (the C core of `json`) directly:
    `import json` imports `re` and `enum`, 25-60 ms on a busy machine, a third of a whole run."""

    strict = True
    object_hook = object_pairs_hook = None
    parse_float, parse_int = float, int
    parse_constant = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}.__getitem__


_scan = _json.make_scanner(_JSONSettings())
# markers=None skips the cycle check: every message is a fresh tree built by `encode`.
_dump = _json.make_encoder(None, None, _json.encode_basestring_ascii, None, ":", ",", False, False, True)


def dumps(message):
    return "".join(_dump(message, 0)).encode()


def loads(data):
    """The value of one JSON message; ValueError (or RecursionError) when it is not exactly one."""
    text = data.decode("utf-8")
    try:
        value, end = _scan(text, 0)
    except (StopIteration, SystemError):  # how the C scanner reports bad JSON without the `json` package
        raise ValueError("not JSON") from None
    if end != len(text):
        raise ValueError("not JSON: data after the value")
    return value


def _send(fd, message):
    data = dumps(message)
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
        raise ValueError(f"a message of {n} bytes is over the {MAX_MESSAGE}-byte limit")
    return loads(_read_exactly(fd, n))


# --------------------------------------------------------------------------------------------------------------
# the candidate's process

_OPERATIONS = {
    "call": lambda target, args, kwargs: target(*args, **kwargs),
    "attr": getattr,
    "item": lambda target, key: target[key],
    "len": len,
    "list": list,  # iteration: the judge gets the items as plain data
}


def _error_text():
    """The current exception's traceback without the harness's own frames: what the program's code did."""
    import traceback

    kind, error, tb = sys.exc_info()
    while tb is not None and tb.tb_frame.f_code.co_filename == _error_text.__code__.co_filename:
        tb = tb.tb_next
    return "".join(traceback.format_exception(kind, error, tb))[-4000:]


def _candidate(requests, replies):
    """Serve the judge: load the program (and the setup code), then run the operations it asks for."""
    namespace = {"__name__": "candidate", "__builtins__": builtins}
    kept = []  # objects that are not plain data, by the index the judge holds

    def keep(value, depth):
        # Subclasses of plain data go as their base type (Counter -> dict, namedtuple -> tuple), where Python's
        # `==` treats them alike; their own `__eq__` is dropped. Anything else stays here.
        for base in _PLAIN_BASES:
            if isinstance(value, base) and depth < MAX_DEPTH:
                plain = base(value)
                if type(plain) is base:
                    return encode(plain, keep, depth)
        kept.append(value)
        return ["r", len(kept) - 1, type(value).__name__[:60]]

    def resolve(tag, items):
        if tag == "r":
            return kept[items[0]]
        if tag == "n":  # an object the setup code built, under its name: the setup code ran here too
            return namespace[items[0]]
        if tag == "I":  # an iterator the test passes (a generator expression, map(...)): its items
            return iter([decode(v, resolve) for v in items])
        raise ValueError(f"unknown tag {tag!r}")

    while True:
        tag, operation, *operands = _recv(requests)
        try:
            if operation == "load":
                with open("/work/candidate.py", encoding="utf-8") as f:
                    exec(compile(f.read(), "/work/candidate.py", "exec"), namespace)
                exec(compile(operands[0], "<test_setup_code>", "exec"), namespace)
                result = None
            elif operation == "names":
                result = {name: namespace[name] for name in operands[0] if name in namespace}
            else:
                result = _OPERATIONS[operation](*[decode(o, resolve) for o in operands])
            reply = [tag, "value", encode(result, keep)]
        except BaseException as e:  # SystemExit and KeyboardInterrupt too: the candidate does not decide how we exit
            reply = [tag, "error", type(e).__name__, _error_text()]
        try:
            _send(replies, reply)
        except (ValueError, RecursionError, MemoryError) as e:  # JSON cannot write it (e.g. too deep)
            _send(replies, [tag, "error", type(e).__name__, f"its result could not be sent: {e}"])


# --------------------------------------------------------------------------------------------------------------
# the judge


class Unverifiable(BaseException):
    """The test needs what only the program's code could answer (its object's `==`, `bool`, `str`, ...).
    A BaseException, so a test's own `except Exception` cannot swallow it."""


class ProgramError(Exception):
    """The program's code raised. Raised in the judge as a subclass of the same built-in exception, so a test
    that expects that exception catches it; an uncaught one is a runtime error."""

    @property
    def text(self):
        return self.args[0]


def _program_error(name, text):
    kind = getattr(builtins, name, None)
    # Never a StopIteration: raised inside map() or a for loop in the judge it would end the loop early, and
    # skip the asserts after it.
    if isinstance(kind, type) and issubclass(kind, Exception) and not issubclass(kind, _ENDS_ITERATION):
        try:
            return type(name, (kind, ProgramError), {})(text)
        except TypeError:  # an exception whose constructor needs more than a message
            pass
    return ProgramError(text)


def _show(value, limit=300):
    """repr for messages, with a Remote's label in place of the refused repr of the program's object."""
    text = _repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _repr(value, depth=0):
    kind = type(value)
    if kind is Remote:
        return value._remote_label
    if depth < MAX_DEPTH and kind in (list, tuple):  # sets and dict keys cannot hold one: its hash is refused
        items = ", ".join(_repr(v, depth + 1) for v in value)
        return f"[{items}]" if kind is list else f"({items}{',' if len(value) == 1 else ''})"
    if depth < MAX_DEPTH and kind is dict:
        return "{" + ", ".join(f"{k!r}: {_repr(v, depth + 1)}" for k, v in value.items()) + "}"
    try:
        return repr(value)
    except Exception as e:  # a judge-side object whose repr fails
        return f"<{type(value).__name__}: repr raised {type(e).__name__}>"


class Remote:
    """The judge's stand-in for a function, class or object of the program (see the module docstring)."""

    __slots__ = ("_remote_judge", "_remote_index", "_remote_label", "_remote_type")

    def __init__(self, judge, index, label, kind):
        self._remote_judge, self._remote_index, self._remote_label, self._remote_type = judge, index, label, kind

    def __call__(self, *args, **kwargs):
        return self._remote_judge.ask("call", self, list(args), kwargs)

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._remote_judge.ask("attr", self, name)

    def __getitem__(self, key):
        return self._remote_judge.ask("item", self, key)

    def __len__(self):
        return self._remote_judge.ask("len", self)

    def __iter__(self):  # `in`, `reversed` and unpacking come through here too: the judge compares the items
        items = self._remote_judge.ask("list", self)
        if type(items) is not list:
            raise Unverifiable(f"iterating {self._remote_label} gave a {type(items).__name__}, not a list")
        return iter(items)


def _refuse(operation):
    def refuse(self, *args):
        self._remote_judge.refused = True  # also when a test's bare `except:` swallows the exception
        raise Unverifiable(
            f"{self._remote_label} is a `{self._remote_type}` object of the program, not plain data: `{operation}` on "
            "it would run the program's own code, so the judge cannot check this test"
        )

    return refuse


for _op in (
    "bool eq ne lt le gt ge hash str repr format bytes int float complex index round trunc floor ceil neg pos abs "
    "invert setitem delitem enter exit add sub mul matmul truediv floordiv mod divmod pow lshift rshift and xor or "
    "radd rsub rmul rmatmul rtruediv rfloordiv rmod rdivmod rpow rlshift rrshift rand rxor ror iadd isub imul "
    "imatmul itruediv ifloordiv imod ipow ilshift irshift iand ixor ior"
).split():
    setattr(Remote, f"__{_op}__", _refuse(_op))


class Judge:
    """The judge's side of the conversation with the candidate's process, and the verdict."""

    def __init__(self, secret, result_fd, requests, replies, child):
        self.nonce, self.limits = secret["nonce"], secret["limits"]
        self.result_fd, self.requests, self.replies, self.child = result_fd, requests, replies, child
        self.calls = []  # (label, value) of the program's calls in the current test, for the feedback
        self.setup_objects = {}  # id -> name of what the setup code built (passed to the program by name)
        self.refused = False
        self.reached = 0  # operations the tests made on the program's objects

    def verdict(self, status, detail="", limit=""):
        with os.fdopen(self.result_fd, "w") as out:
            out.write(repr((self.nonce, status, detail[:8000], limit)) + "\n")  # the parent reads 64 KiB
        try:
            os.kill(self.child, SIGKILL)
        except ProcessLookupError:  # already reaped
            pass
        os._exit(0)  # skip interpreter teardown: bwrap and the caller wait for this exit

    def _outbound(self, value, depth):
        """How a judge value that is not plain data crosses to the candidate's process, if it can."""
        if type(value) is Remote:
            return ["r", value._remote_index]
        if id(value) in self.setup_objects:
            return ["n", self.setup_objects[id(value)]]
        if hasattr(type(value), "__next__") and hasattr(type(value), "__iter__"):
            return ["I", *[encode(v, self._outbound, depth + 1) for v in value]]
        raise Unverifiable(
            f"the test passes a {type(value).__name__} to the program: only plain data, the program's own objects "
            "and what the setup code built can cross into its process"
        )

    def _label(self, operation, operands):
        target = _show(operands[0]) if operands else ""
        if operation == "call":
            args, kwargs = operands[1], operands[2]
            return f"{target}({', '.join([*map(_show, args), *(f'{k}={_show(v)}' for k, v in kwargs.items())])})"
        if operation == "attr":
            return f"{target}.{operands[1]}"
        if operation == "item":
            return f"{target}[{_show(operands[1])}]"
        return f"{operation}({target})"

    def ask(self, operation, *operands):
        """One operation in the candidate's process; its result as plain data or a Remote."""
        label = self._label(operation, operands)
        tag = os.urandom(8).hex()
        message = [tag, operation, *[encode(o, self._outbound) for o in operands]]
        try:
            _send(self.requests, message)
            reply = _recv(self.replies)
        except (EOFError, BrokenPipeError):
            self._candidate_ended()
        except MemoryError:
            self.verdict("runtime_error", "the judge ran out of memory reading the program's reply", self._memory())
        except (ValueError, RecursionError) as e:
            self.verdict("runtime_error", f"the candidate's process sent a malformed reply ({type(e).__name__}: {e})")
        if type(reply) is not list or len(reply) < 3 or reply[0] != tag:
            self.verdict("runtime_error", "the candidate's process sent a reply to no request (it wrote on the pipe)")
        self.reached += 1
        if reply[1] == "error" and len(reply) == 4 and type(reply[2]) is str and type(reply[3]) is str:
            raise _program_error(reply[2], reply[3] + self._limit_note(reply[2], reply[3]))
        if reply[1] != "value" or len(reply) != 3:
            self.verdict("runtime_error", "the candidate's process sent a malformed reply")

        def remote(tag, items):
            if tag == "r" and len(items) == 2 and type(items[0]) is int and type(items[1]) is str:
                return Remote(self, items[0], label, items[1])
            raise ValueError(f"unknown tag {tag!r}")

        try:
            value = decode(reply[2], remote)
        except (ValueError, TypeError, RecursionError) as e:  # e.g. a set of lists: only a forged reply has one
            self.verdict("runtime_error", f"the candidate's process sent a malformed reply ({type(e).__name__}: {e})")
        if operation == "call":
            self.calls.append((label, value))
        return value

    def _memory(self):
        return f"the {self.limits['memory_mb']} MB address-space cap per process"

    def _limit_note(self, name, text):
        """The sandbox limit behind an error, if any, for the verdict's reason."""
        if name == "MemoryError" or "[Errno 12]" in text:  # ENOMEM: mmap, fork
            return f"\n(hit {self._memory()})"
        if "[Errno 28]" in text:  # ENOSPC
            return f"\n(hit the {self.limits['disk_mb']} MB size cap of each writable path: /tmp, /work, /dev/shm)"
        if "[Errno 27]" in text:  # EFBIG: RLIMIT_FSIZE
            return f"\n(hit the {self.limits['file_mb']} MB cap on the size of one file)"
        return ""

    def _candidate_ended(self):
        _, status = os.waitpid(self.child, 0)
        if os.WIFSIGNALED(status):
            signal = os.WTERMSIG(status)
            if signal in (SIGXCPU, SIGKILL):  # SIGKILL: the hard CPU limit (soft = hard), or the program's own kill
                cap = f"the CPU time limit of {self.limits['cpu_s']}s"
                why = f"the candidate's process was killed (signal {signal}): it ran past {cap}, or killed itself"
                self.verdict("timeout", why, cap)
            if signal == SIGXFSZ:
                cap = f"the {self.limits['file_mb']} MB cap on the size of one file"
                self.verdict("runtime_error", f"the candidate's process exceeded {cap}", cap)
            self.verdict("runtime_error", f"the candidate's process was killed by signal {signal} before the end")
        code = os.WEXITSTATUS(status)
        self.verdict("runtime_error", f"the candidate's process ended (status {code}) before the tests finished")

    def seen(self):
        return (" with " + ", ".join(f"{label} = {_show(value)}" for label, value in self.calls)) if self.calls else ""

    def run(self, secret):
        try:
            self.ask("load", secret["setup"])
            found = self.ask("names", secret["names"])
        except ProgramError as e:
            self.verdict("runtime_error", e.text, _limit_of(e.text))
        namespace = {"__builtins__": builtins, "__name__": "__main__"}  # a test file's `if __name__ ...` runs
        for module in secret["modules"]:  # e.g. `math` in `math.isclose(...)`: always the real one
            try:
                namespace[module] = __import__(module)
            except ImportError:
                pass
        if type(found) is not dict:
            self.verdict("runtime_error", "the candidate's process sent a malformed reply")
        bound = [name for name in secret["names"] if name in found]  # not the reply's: it could add `all`
        for name in bound:
            namespace[name] = found[name]
            if type(found[name]) is Remote:
                found[name]._remote_label = name
        plain_values_read = any(type(found[name]) is not Remote for name in bound)  # e.g. a constant of the program
        self.reached = 0
        before = dict(namespace)
        missing = object()
        number, test = 0, "test_setup_code"
        try:
            exec(compile(secret["setup"], "<test_setup_code>", "exec"), namespace)
            self.setup_objects = {id(v): k for k, v in namespace.items() if before.get(k, missing) is not v}
            for number, test in enumerate(secret["tests"], start=1):
                self.calls = []
                exec(compile(test, f"<test {number}>", "exec"), namespace)
                if self.refused:
                    raise Unverifiable("the test swallowed the judge's refusal to compare the program's object")
        except Unverifiable as e:
            self.verdict("unverifiable", f"test {number}: {test}\n{e}")
        except ProgramError as e:
            self.verdict("runtime_error", f"test {number}: {test}\n{e.text}", _limit_of(e.text))
        except AssertionError:
            self.verdict("wrong", f"test {number}: {test}\nfailed{self.seen()}")
        except NameError as e:
            self.verdict("runtime_error", f"test {number}: {test}\nNameError: {_message(e)} (the program lacks it)")
        except MemoryError:
            self.verdict("runtime_error", f"test {number}: {test}\nthe judge ran out of memory", self._memory())
        except Exception as e:
            self.verdict("wrong", f"test {number}: {test}\nraised {type(e).__name__}: {_message(e)}{self.seen()}")
        if not self.reached and not plain_values_read:
            self.verdict("unverifiable", "the tests passed without reaching the program's code: any program would pass")
        self.verdict("correct", f"{len(secret['tests'])} tests passed")


def _message(error, limit=300):
    try:
        text = str(error)
    except BaseException:  # its message holds the program's object, whose str is refused
        text = ""
    return text if len(text) <= limit else text[:limit] + "..."


def _limit_of(text):
    """The cap named in a note added by `Judge._limit_note`, for the verdict's limit field."""
    return text.rpartition("\n(hit ")[2].rstrip(")") if "\n(hit " in text else ""


def main():
    secret_fd, result_fd = int(sys.argv[1]), int(sys.argv[2])
    # Non-dumpable: the candidate runs as the same uid, and could otherwise open /proc/<judge>/mem or /fd/*,
    # or ptrace the judge. Called through _ctypes: `import ctypes` costs 3-10 ms, a third of a whole run.
    import _ctypes

    if _ctypes.call_function(_ctypes.dlsym(_ctypes.dlopen(None), "prctl"), (4, 0, 0, 0, 0)) != 0:  # PR_SET_DUMPABLE
        raise OSError("prctl(PR_SET_DUMPABLE, 0) failed")
    sys.set_int_max_str_digits(0)  # a program may return a big number; the CPU limit bounds the cost
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
    with os.fdopen(secret_fd, "rb") as f:
        secret = loads(f.read())
    Judge(secret, result_fd, request_write, reply_read, child).run(secret)


if __name__ == "__main__":
    main()
