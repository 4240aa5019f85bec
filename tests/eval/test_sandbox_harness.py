"""pass@1 cannot be gamed (eval/sandbox.py, eval/sandbox_child.py): a program passes its tests
only when the harness reported, through its own pipe and nonce, that every test statement
ran. Each hostile program below passed on the old sandbox, which took exit code 0 as a pass."""

from __future__ import annotations

import pytest

from eval.codegen import run_tests
from eval.sandbox import run_with_tests

FAILING = {"tests": "assert f(1) == 2\nassert f(2) == 4\n"}  # f below returns 0

HOSTILE = {
    "sys_exit_0": "import sys\ndef f(x):\n    return 0\nsys.exit(0)",
    "os_exit_0": "import os\ndef f(x):\n    return 0\nos._exit(0)",
    "exit_builtin": "def f(x):\n    return 0\nexit()",
    "system_exit_inside_a_test": "def f(x):\n    raise SystemExit(0)",
    "os_exit_inside_a_test": "import os\ndef f(x):\n    os._exit(0)",
    "excepthook_exits_0": (
        "import os, sys\nsys.excepthook = lambda *a: os._exit(0)\ndef f(x):\n    return 0"
    ),
    "atexit_exits_0": "import atexit, os\natexit.register(os._exit, 0)\ndef f(x):\n    return 0",
    "keyboard_interrupt_in_test": "def f(x):\n    raise KeyboardInterrupt",
    # the harness's marker, guessed, on stdout and on every descriptor the program can find
    "forged_marker": (
        "import os\ndef f(x):\n    return 0\n"
        "fake = b'0' * 32 + b' start \\n' + b'0' * 32 + b' ok 0 \\n' + b'0' * 32 + b' ok 1 \\n'"
        " + b'0' * 32 + b' done 2 \\n'\n"
        "print(fake.decode())\n"
        "for fd in range(1, 1024):\n    try:\n        os.write(fd, fake)\n"
        "    except OSError:\n        pass\nos._exit(0)"
    ),
    "writes_every_fd_after_tests_start": (
        "import os\ndef f(x):\n    for fd in range(3, 1024):\n        try:\n"
        "            os.write(fd, b'x ok 0 \\nx ok 1 \\nx done 2 \\n')\n"
        "        except OSError:\n            pass\n    os._exit(0)"
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_program_that_ends_early_or_forges_the_marker_does_not_pass(name):
    got = run_tests(HOSTILE[name], FAILING, timeout_s=10)
    assert not got["passed"] and got["pred"] is None and got["error"], (name, got)


def test_the_issues_example_fails():
    got = run_tests("import sys\nsys.exit(0)", {"tests": "assert False"})
    assert not got["passed"]
    assert "before the tests ran" in got["error"]


def test_replaced_builtins_do_not_reach_the_tests():
    # old: `raise AssertionError` in the tests called the program's replacement, which
    # returned SystemExit(0): exit 0, "passed"; and len() answered what the tests wanted
    program = (
        "import builtins\nbuiltins.AssertionError = lambda *a: SystemExit(0)\n"
        "builtins.len = lambda x: 3\nbuiltins.isinstance = lambda *a: True\n"
        "def f(x):\n    return []"
    )
    tests = "if f(1) != [1]:\n    raise AssertionError('wrong')\n"
    assert not run_tests(program, {"tests": tests})["passed"]
    assert not run_tests(program, {"tests": "assert len(f(1)) == 3\n"})["passed"]
    assert not run_tests(program, {"tests": "assert isinstance(f(1), int)\n"})["passed"]


def test_an_early_exit_says_how_many_tests_ran():
    program = "import os\ndef f(x):\n    if x == 2:\n        os._exit(0)\n    return 2 * x"
    res = run_with_tests(program, FAILING["tests"], timeout_s=10)
    assert res.error == "the program ended (exit code 0) after 1 of 2 tests ran"


def test_a_forged_record_is_named():
    res = run_with_tests(HOSTILE["forged_marker"], FAILING["tests"], timeout_s=10)
    assert res.error == "the program wrote to the harness's report pipe"


def test_honest_programs_pass_and_a_failing_test_is_named():
    program = "import math\n\ndef f(x):\n    return 2 * x\n\nif __name__ == '__main__':\n    f(0)"
    assert run_tests(program, FAILING) == {"passed": True, "pred": "pass", "error": None}
    humaneval = {
        "tests": "def check(candidate):\n    assert candidate(1) == 2\n"
        "    assert candidate(3) == 6\n\ncheck(f)\n"
    }
    assert run_tests(program, humaneval)["passed"]
    got = run_tests("def f(x):\n    return x", FAILING)
    assert got["error"] == "AssertionError (in test 1 of 2)"
    got = run_tests("def f(x):\n    return undefined", FAILING)
    assert got["error"] == "NameError: name 'undefined' is not defined (in test 1 of 2)"
    got = run_tests("def f(x)\n    return x", FAILING)
    assert got["error"].startswith("SyntaxError") and "before the tests ran" in got["error"]


def test_programs_output_and_threads_do_not_disturb_the_verdict():
    program = (
        "import threading, time\nprint('chatter')\n"
        "threading.Thread(target=time.sleep, args=(30,)).start()\ndef f(x):\n    return 2 * x"
    )
    assert run_tests(program, FAILING, timeout_s=10)["passed"]


def test_a_trace_function_cannot_jump_over_the_asserts():
    # old: f's tracer jumped from check's second line to its last, and check(f) "passed"
    program = (
        "import sys\n"
        "def f(x):\n"
        "    caller = sys._getframe(1)\n"
        "    end = caller.f_code.co_firstlineno + 3\n"
        "    def tracer(frame, event, arg):\n"
        "        if frame is caller and event == 'line' and frame.f_lineno < end:\n"
        "            frame.f_lineno = end\n"
        "        return tracer\n"
        "    caller.f_trace = tracer\n"
        "    sys.settrace(lambda *a: None)\n"
        "    return 2"
    )
    tests = (
        "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(2) == 4\n"
        "    return None\n\ncheck(f)\n"
    )
    got = run_tests(program, {"tests": tests})
    assert not got["passed"] and "tracing is disabled" in got["error"]
