"""Code answers in the bubblewrap sandbox: correct programs pass, and hostile ones can neither pass nor touch the host.

Every hostile program is written so that *if its attack worked* it would define a correct `add`; a verdict other
than "correct" therefore means the attack failed, and the host checks after each run make sure of the rest.
"""

import os
import shutil
import socket
import textwrap
import time
from pathlib import Path

import pytest

from reflectevo.schema import Problem
from verifiers import code as code_verifier
from verifiers import sandbox
from verifiers.sandbox import Limits

needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bwrap not installed (apt-get install -y --no-install-recommends bubblewrap)"
)
FAST = Limits(wall_s=2.0, cpu_s=1)
TESTS = ["assert add(2, 3) == 5", "assert add(10, -4) == 6"]


def problem(tests=TESTS, setup: str = "") -> Problem:
    return Problem(id="c1", task="mbpp", kind="code", question="Write add(a, b).", answer="", tests=tests,
                   test_setup_code=setup)


def verify(output: str, **kwargs):
    return code_verifier.verify(problem(**kwargs), output, rich_feedback=True, limits=FAST)


class TestSplitNames:
    def test_builtins_and_standard_modules_stay_with_the_judge(self):
        names = sandbox.split_names(["assert math.isclose(volume_cone(5, 12), 314.15, rel_tol=0.001)",
                                    "assert abs(f(1)) == 1 and all(isinstance(x, int) for x in g())"])
        assert (names.program, names.modules) == (["f", "g", "volume_cone"], ["math"])

    def test_names_the_tests_bind_are_theirs(self):
        names = sandbox.split_names(["res = f(1)\nassert res == 2", "for i in range(3):\n    assert h(i) == i",
                                    "assert sorted(k(), key=lambda t: t[0]) == []", "import math\nassert m() == math.pi"])
        assert (names.program, names.modules) == (["f", "h", "k", "m"], [])

    def test_a_module_name_called_directly_is_the_programs_function(self):
        assert sandbox.split_names(["assert random(3) == 1"]).program == ["random"]

    def test_tests_that_read_no_name_of_the_program_are_unverifiable(self):
        verdict = verify("def add(a, b):\n    return 0", tests=["assert abs(-1) == 1"])
        assert verdict.status == "unverifiable" and "any program would pass" in verdict.reason

    def test_a_test_that_does_not_parse_is_a_dataset_error(self):
        with pytest.raises(SyntaxError):
            code_verifier.verify(problem(tests=["assert add(1, 2) =="]), "def add(a, b):\n    return a + b")


class TestExtraction:
    def test_fenced_block_with_a_definition_wins(self):
        output = "Here:\n```python\nprint('usage')\n```\nand\n```python\ndef add(a, b):\n    return a + b\n```"
        assert code_verifier.extract_code(output) == "def add(a, b):\n    return a + b"

    def test_unfenced_text_is_the_code(self):
        assert code_verifier.extract_code("def f():\n    pass\n") == "def f():\n    pass"

    @pytest.mark.parametrize("output", ["", "   \n", "```python\n```"])
    def test_no_code_is_unparseable(self, output):
        assert code_verifier.verify(problem(), output).status == "unparseable"


def test_missing_bwrap_is_an_error_that_says_what_to_install(monkeypatch):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    with pytest.raises(sandbox.SandboxUnavailable, match="apt-get install -y --no-install-recommends bubblewrap"):
        code_verifier.verify(problem(), "def add(a, b):\n    return a + b")


@needs_bwrap
class TestVerdicts:
    def test_correct_program(self):
        verdict = code_verifier.verify(problem(), "```python\ndef add(a, b):\n    return a + b\n```")
        assert (verdict.status, verdict.reason) == ("correct", "all tests passed")
        assert verdict.parsed_answer == "def add(a, b):\n    return a + b"

    def test_wrong_program_gets_binary_feedback_by_default(self):
        verdict = code_verifier.verify(problem(), "def add(a, b):\n    return a - b")
        assert (verdict.status, verdict.reason) == ("wrong", "a test failed")

    def test_rich_feedback_names_the_failing_test_and_the_value(self):
        verdict = verify("def add(a, b):\n    print('debug', a, b)\n    return a * b")
        assert verdict.status == "wrong"
        assert "assert add(2, 3) == 5" in verdict.reason and "add(2, 3) = 6" in verdict.reason
        assert "debug 2 3" in verdict.reason  # the program's output tail

    def test_exception_is_a_runtime_error_with_the_traceback(self):
        verdict = verify("def add(a, b):\n    return a / 0")
        assert verdict.status == "runtime_error"
        assert "ZeroDivisionError" in verdict.reason and 'candidate.py", line 2, in add' in verdict.reason

    def test_syntax_error_is_a_runtime_error(self):
        verdict = verify("def add(a, b)\n    return a + b")
        assert verdict.status == "runtime_error" and "SyntaxError" in verdict.reason

    def test_setup_code_runs_before_the_tests(self):
        verdict = verify("def add(a, b):\n    return a + b + OFFSET", setup="OFFSET = 0", tests=["assert add(1, 1) == 2"])
        assert verdict.correct

    def test_generators_and_tuples_compare_like_python(self):
        tests = ["assert list(evens(5)) == [0, 2, 4]", "assert pair() == (1, 2)", "assert pair() != [1, 2]"]
        code = "def evens(n):\n    return (i for i in range(n) if i % 2 == 0)\ndef pair():\n    return (1, 2)"
        assert verify(code, tests=tests).correct

    def test_subclasses_of_builtin_data_compare_as_their_base_type(self):
        code = "import collections\ndef count(xs):\n    return collections.Counter(xs)\n" \
               "def point():\n    return collections.namedtuple('P', 'x y')(1, 2)"
        tests = ["assert count('aab') == {'a': 2, 'b': 1}", "assert point() == (1, 2)"]
        assert verify(code, tests=tests).correct

    def test_comparing_an_object_of_the_program_is_unverifiable(self):
        code = "import collections\ndef q():\n    return collections.deque([1])"
        verdict = verify(code, tests=["assert q() == [1]"])
        assert verdict.status == "unverifiable" and "q() is a `deque` object of the program, not plain data" in verdict.reason

    def test_concurrent_runs_use_separate_uids(self):
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:
            verdicts = list(pool.map(lambda _: verify("def add(a, b):\n    return a + b"), range(6)))
        assert all(v.correct for v in verdicts)


# --------------------------------------------------------------------------------------------------------------
# hostile programs

HOSTILE = {
    "infinite_loop": "while True:\n    pass",
    "sleep_forever": "import time\ntime.sleep(1000)",
    "infinite_loop_in_the_function": "def add(a, b):\n    while True:\n        pass",
    "fork_bomb": """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """,
    "memory_bomb": "x = bytearray(8 << 30)\ndef add(a, b):\n    return a + b",
    "memory_growth": "x = []\nwhile True:\n    x.append(' ' * 10**6)",
    "huge_output": "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)",
    "deep_recursion_crash": "import sys\nsys.setrecursionlimit(10**7)\ndef r(n):\n    return r(n + 1)\nr(0)",
    "network_loopback": """
        import socket
        socket.create_connection(("127.0.0.1", {port}), timeout=1)
        def add(a, b):
            return a + b
    """,
    "write_outside": """
        assert open({canary!r}).read() == "untouched"  # the host's file, not a look-alike in the sandbox's /tmp
        open({canary!r}, "w").write("pwned")
        def add(a, b):
            return a + b
    """,
    "write_host_tmp_and_root": """
        open("/tmp/{marker}", "w").write("only inside the sandbox's own tmpfs")
        import os
        os.makedirs("/root/{marker}")
        def add(a, b):
            return a + b
    """,
    "read_host_secrets": """
        import os
        found = [p for p in ("/etc/shadow", "/etc/passwd", "/root", {canary!r}) if os.path.exists(p)]
        if found:
            def add(a, b):
                return a + b
    """,
    "read_parent_env": """
        import os
        seen = str(dict(os.environ))
        for pid in os.listdir("/proc"):
            try:
                seen += open(f"/proc/{{pid}}/environ").read()
            except OSError:
                pass
        print(seen)
        if {secret!r} in seen:
            def add(a, b):
                return a + b
    """,
    "find_host_processes": """
        import os
        cmdlines = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdlines.append(open(f"/proc/{{pid}}/cmdline").read())
            except OSError:
                pass
        if any("pytest" in c for c in cmdlines):
            def add(a, b):
                return a + b
    """,
    "kill_parent": "import os\nos.kill(os.getppid(), 9)\ndef add(a, b):\n    return a + b",
    "kill_everything": "import os, signal\nos.kill(-1, signal.SIGKILL)",
    "stop_the_judge": "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\ndef add(a, b):\n    return a + b",
    "orphan_subprocesses": """
        import subprocess, os
        subprocess.Popen(["sleep", "1000"], start_new_session=True)
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                import time
                time.sleep(1000)
            os._exit(0)
        def add(a, b):
            return a - b
    """,
    "exit_zero_early": "import os\nos._exit(0)",
    "sys_exit_zero": "import sys\nsys.exit(0)",
    "exit_zero_inside_the_test": "import os\ndef add(a, b):\n    os._exit(0)",
    "raise_system_exit_inside_the_test": "def add(a, b):\n    raise SystemExit(0)",
    "print_fake_success": """
        print("PASS")
        print("('0123456789abcdef0123456789abcdef', 'correct', 'all tests passed')")
        print("all tests passed")
        import os
        os._exit(0)
    """,
    "write_fake_verdict_to_every_fd": """
        import os
        fake = b"('00000000000000000000000000000000', 'correct', '')\\n"
        for fd in range(3, 64):
            try:
                os.write(fd, fake)
            except OSError:
                pass
        for pid in ("1", str(os.getppid())):
            for fd in range(64):
                try:
                    f = os.open(f"/proc/{{pid}}/fd/{{fd}}", os.O_WRONLY)
                    os.write(f, fake)
                except OSError:
                    pass
        os._exit(0)
    """,
    "patch_assert_and_builtins": """
        import builtins
        builtins.AssertionError = type("Never", (Exception,), {{}})
        builtins.eval = lambda *a, **k: True
        builtins.bool = lambda *a: True
        def add(a, b):
            return 0
    """,
    "always_equal_object": """
        class Anything:
            def __eq__(self, other):
                return True
            __hash__ = object.__hash__
        def add(a, b):
            return Anything()
    """,
    "int_subclass_equal_to_everything": """
        class Evil(int):
            def __eq__(self, other):
                return True
        def add(a, b):
            return Evil(0)
    """,
    "read_the_judge": """
        import os
        ppid = os.getppid()
        try:
            os.open(f"/proc/{{ppid}}/mem", os.O_RDONLY)
            leaked = True
        except OSError:
            leaked = False
        try:
            leaked = leaked or bool(os.listdir(f"/proc/{{ppid}}/fd"))
        except OSError:
            pass
        if leaked:
            def add(a, b):
                return a + b
    """,
    "ptrace_the_judge": """
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.ptrace(16, os.getppid(), 0, 0) == 0:  # PTRACE_ATTACH
            def add(a, b):
                return a + b
    """,
    "steal_expected_values": """
        import gc, os, re, sys
        text = ""
        for root in ("/work", "/sandbox", "/tmp"):
            for d, _, files in os.walk(root):
                for f in files:
                    try:
                        text += open(os.path.join(d, f), errors="replace").read()
                    except OSError:
                        pass
        text += " ".join(o for o in gc.get_objects() if isinstance(o, str))
        def add(a, b):
            frame = sys._getframe(1)
            seen = text + repr(frame.f_locals) + repr(frame.f_globals)
            m = re.search(rf"add\\({{a}}, {{b}}\\) == (-?\\d+)", seen)
            return int(m.group(1)) if m else None
    """,
    "close_all_fds": "import os\nos.closerange(0, 1024)\nwhile True:\n    pass",
    "forge_replies_on_every_fd": """
        import json, os, sys
        # Replies for the requests to come: the tag of the request being served (read from the harness's
        # frame), guessed tags, and the correct sums the tests expect.
        tags = ["0" * 16] + [f.f_locals["tag"] for f in (sys._getframe(i) for i in range(1, 4)) if "tag" in f.f_locals]
        for tag in tags:
            for value in (None, {{}}, 5, 6, True):
                data = json.dumps([tag, "value", value]).encode()
                for fd in range(3, 64):
                    try:
                        os.write(fd, len(data).to_bytes(4, "big") + data)
                    except OSError:
                        pass
        data = json.dumps(["0" * 16, "value", 5]).encode()
        if os.fork() == 0:  # and a child that keeps writing them after the program has loaded
            for _ in range(1000):
                for fd in range(3, 64):
                    try:
                        os.write(fd, len(data).to_bytes(4, "big") + data)
                    except OSError:
                        pass
            os._exit(0)
        def add(a, b):
            return a - b
    """,
    "forge_replies_in_order": """
        import marshal, os
        # The answers to the requests to come, in the order the judge asks (the harness's earlier protocol:
        # an acknowledgement of the setup code, then add(2, 3) and add(10, -4)).
        for fd in range(3, 64):
            for reply in (("value", None), ("value", 5), ("value", 6)):
                data = marshal.dumps(reply, 4)
                try:
                    os.write(fd, len(data).to_bytes(4, "big") + data)
                except OSError:
                    pass
        def add(a, b):
            return a - b
    """,
    # Memory held outside the process's address space: each program holds what it can of 512 MB (less than the
    # issue's 2 GB, to stay within FAST's CPU second), and passes if that is over 256 MB (more than the three
    # capped tmpfs together).
    "hold_512mb_in_dev_shm": """
        held = 0
        try:
            for i in range(64):
                with open(f"/dev/shm/block{{i}}", "wb") as f:
                    f.write(b"x" * (8 << 20))
                held += 8
        except OSError:
            pass
        if held > 256:
            def add(a, b):
                return a + b
    """,
    "write_512mb_under_the_sandbox_temp": """
        import os
        held = 0
        for root in ("/work", "/tmp", os.getcwd()):
            try:
                for i in range(64 - held // 8):
                    with open(os.path.join(root, f"block{{i}}"), "wb") as f:
                        f.write(b"x" * (8 << 20))
                    held += 8
            except OSError:
                pass
        if held > 256:
            def add(a, b):
                return a + b
    """,
    "write_under_dev": "open('/dev/block', 'wb').write(b'x')\ndef add(a, b):\n    return a + b",
    "hold_512mb_in_memfds": """
        import os
        held, fds = 0, []
        try:
            for i in range(32):
                fds.append(os.memfd_create(f"block{{i}}"))
                os.write(fds[-1], b"x" * (16 << 20))
                held += 16
        except OSError:
            pass
        if held > 256:
            def add(a, b):
                return a + b
    """,
    "hold_512mb_in_sysv_shared_memory": """
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.shmat.restype = ctypes.c_void_p
        held = 0
        for i in range(16):
            segment = libc.shmget(0, 32 << 20, 0o1600)
            if segment < 0:
                break
            address = libc.shmat(segment, None, 0)
            ctypes.memset(address, 120, 32 << 20)
            libc.shmdt(ctypes.c_void_p(address))
            held += 32
        if held > 256:
            def add(a, b):
                return a + b
    """,
    "map_2gb_of_shared_memory": """
        import mmap
        m = mmap.mmap(-1, 2 << 30)
        m[:] = b"x" * len(m)
        def add(a, b):
            return a + b
    """,
}

# The test shapes MBPP and MBPP-style sets use, each against a program that would pass it if the program could
# change what the test means: rebinding the names it calls, or returning an object that equals everything.
ALWAYS_EQUAL = """
class Anything:
    def __eq__(self, other):
        return True
    __ne__ = lambda self, other: False
    __lt__ = __le__ = __gt__ = __ge__ = __eq__
    __bool__ = lambda self: True
    __hash__ = object.__hash__
    __iter__ = lambda self: iter([5, 6])
def add(a, b):
    return Anything()
"""
HOSTILE_SHAPES = {
    "rebind_math": ("class math:\n    isclose = staticmethod(lambda *a, **k: True)\ndef volume_cone(r, h):\n    return 0",
                    "assert math.isclose(volume_cone(5, 12), 314.15926535897927, rel_tol=0.001)"),
    "import_a_fake_math": ("import sys, types\nmath = types.SimpleNamespace(isclose=lambda *a, **k: True)\n"
                           "sys.modules['math'] = math\ndef volume_cone(r, h):\n    return 0",
                           "import math\nassert math.isclose(volume_cone(5, 12), 314.15926535897927, rel_tol=0.001)"),
    "rebind_abs": ("abs = lambda x: 0\ndef area(r):\n    return 0", "assert abs(area(2) - 12.566) < 0.01"),
    "rebind_isinstance": ("isinstance = lambda *a: True\ndef to_list(n):\n    return n", "assert isinstance(to_list(3), list)"),
    "rebind_all": ("all = lambda *a: True\ndef is_even(n):\n    return False", "assert all(is_even(x) for x in [2, 4])"),
    "rebind_any": ("any = lambda *a: True\ndef is_even(n):\n    return False", "assert any(is_even(x) for x in [1, 2])"),
    "patch_the_builtins_module": ("import builtins\nbuiltins.all = builtins.any = lambda *a: True\n"
                                  "def is_even(n):\n    return False", "assert all(is_even(x) for x in [2, 4])"),
    "inject_names_into_the_judge": ("""
import sys
frame = sys._getframe(1)
while "keep" not in frame.f_locals:  # the harness's serving loop in this process
    frame = frame.f_back
keep, harness, send = frame.f_locals["keep"], frame.f_globals, frame.f_globals["_send"]
def fake_all(*args):
    return True
def send_more_names(fd, message):  # adds `all` to the names the judge asked for
    if message[1] == "value" and type(message[2]) is list and message[2][:1] == ["d"]:
        message[2] += ["all", keep(fake_all, 0), "any", keep(fake_all, 0)]
    send(fd, message)
harness["_send"] = send_more_names
def is_even(n):
    return False
""", "assert all(is_even(x) for x in [2, 4])"),
    "rebind_set_and_sorted": ("set = sorted = lambda *a, **k: 'ok'\ndef f(x):\n    return [3, 1]",
                              "assert set(f(1)) == sorted(f(1), key=lambda t: -t)"),
    "always_equal_plain_assert": (ALWAYS_EQUAL, "assert add(2, 3) == 5"),
    "always_equal_in_a_for_loop": (ALWAYS_EQUAL, "for a, b in [(2, 3), (10, -4)]:\n    assert add(a, b) == a + b"),
    "always_equal_in_all_of_a_generator": (ALWAYS_EQUAL, "assert all(add(a, b) == a + b for a, b in [(2, 3), (1, 1)])"),
    "always_equal_in_an_if_expression": (ALWAYS_EQUAL, "assert (True if add(2, 3) == 5 else False)"),
    "always_equal_in_a_lambda_call": (ALWAYS_EQUAL, "assert (lambda x: x == 5)(add(2, 3))"),
    "always_equal_on_the_right": (ALWAYS_EQUAL, "assert 5 == add(2, 3)"),
    "always_equal_in_a_list": (ALWAYS_EQUAL, "assert [add(2, 3)] == [5]"),
    "always_equal_as_isclose": (ALWAYS_EQUAL, "import math\nassert math.isclose(add(2, 3), 5)"),
    "always_equal_sorted_with_a_key": (ALWAYS_EQUAL, "assert sorted([add(2, 3)], key=lambda x: x) == [5]"),
    "always_equal_in_a_humaneval_check": (ALWAYS_EQUAL, "def check(candidate):\n    assert candidate(2, 3) == 5\ncheck(add)"),
    "always_equal_truthy": (ALWAYS_EQUAL, "assert add(2, 3)"),
    "always_equal_in_a_string": (ALWAYS_EQUAL, "assert str(add(2, 3)) == '5'"),
    "always_equal_swallowed_by_the_test": (ALWAYS_EQUAL, "try:\n    ok = add(2, 3) == 5\nexcept:\n    ok = True\nassert ok"),
    "int_subclass_in_a_loop": ("class Evil(int):\n    __eq__ = lambda self, other: True\n    __hash__ = int.__hash__\n"
                               "def add(a, b):\n    return Evil(0)", "for a in range(3):\n    assert add(a, 1) == a + 1"),
    "stop_iteration_ends_a_map_early": ("def f(i):\n    raise StopIteration", "assert all(map(lambda i: f(i) == i, range(3)))"),
    "stop_iteration_in_a_loop": ("def f(i):\n    raise StopIteration", "for x in map(f, [1, 2]):\n    assert x == 0"),
}


def _sandbox_processes() -> list[str]:
    """Live host processes running as any sandbox uid (zombies wait for the host's init to reap them)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        except OSError:
            continue
        if int(fields["Uid"].split()[0]) in sandbox.SANDBOX_UIDS and not fields["State"].strip().startswith("Z"):
            found.append(f"{pid} {fields['Name'].strip()} {fields['State'].strip()}")
    return found


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A canary file, a loopback listener and a secret env var; checks afterwards that none was reached."""
    canary = tmp_path / "canary.txt"
    canary.write_text("untouched")
    before = (canary.stat().st_mtime_ns, sorted(os.listdir(tmp_path)))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    secret = f"hunter2-{os.getpid()}"
    monkeypatch.setenv("REFLECTEVO_TEST_SECRET", secret)
    marker = f"reflectevo-pwned-{os.getpid()}"
    parent = os.getppid()
    yield {"canary": str(canary), "port": listener.getsockname()[1], "secret": secret, "marker": marker}
    assert canary.read_text() == "untouched" and (canary.stat().st_mtime_ns, sorted(os.listdir(tmp_path))) == before
    assert not Path("/tmp", marker).exists() and not Path("/root", marker).exists()
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody connected
    listener.close()
    assert os.getppid() == parent  # our parent (pytest's runner or shell) is alive, and so are we
    deadline = time.monotonic() + 3
    while (left := _sandbox_processes()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"sandbox processes left behind: {left}"


@needs_bwrap
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_program_is_contained(name, host):
    source = textwrap.dedent(HOSTILE[name]).format(**host)
    start = time.monotonic()
    verdict = verify(source)
    elapsed = time.monotonic() - start
    assert verdict.status != "correct", verdict.reason
    assert elapsed < FAST.wall_s + 1.5, f"{name} took {elapsed:.1f}s"
    assert host["secret"] not in verdict.reason


@needs_bwrap
@pytest.mark.parametrize("name", sorted(HOSTILE_SHAPES))
def test_hostile_program_cannot_change_what_a_test_means(name, host):
    code, test = HOSTILE_SHAPES[name]
    verdict = verify(code, tests=[test])
    assert verdict.status != "correct", verdict.reason


@needs_bwrap
@pytest.mark.parametrize("path", ["/dev/shm", "/tmp", "/work"])
def test_a_full_writable_path_is_named_in_the_reason(path):
    code = f"for i in range(256):\n    open('{path}/block%d' % i, 'wb').write(b'x' * (8 << 20))"
    verdict = code_verifier.verify(problem(), code, limits=FAST)
    assert verdict.status == "runtime_error"
    assert f"hit the {FAST.disk_mb} MB size cap of each writable path" in verdict.reason  # binary feedback too


@needs_bwrap
def test_the_memory_cap_is_named_in_the_reason():
    verdict = code_verifier.verify(problem(), HOSTILE["memory_bomb"], limits=FAST)
    assert verdict.status == "runtime_error" and f"hit the {FAST.memory_mb} MB address-space cap" in verdict.reason


@needs_bwrap
def test_a_forged_reply_is_named_in_the_reason(host):
    verdict = verify(textwrap.dedent(HOSTILE["forge_replies_on_every_fd"]).format(**host))
    assert verdict.status == "runtime_error" and "a reply to no request" in verdict.reason


def test_at_least_twenty_hostile_programs():
    assert len(HOSTILE) >= 20 and len(HOSTILE_SHAPES) >= 20
