"""Answer extraction per format (eval/extract.py) and the code sandbox (eval/sandbox.py)."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid

import pytest

from eval.extract import extract, extract_cot
from eval.sandbox import OUTPUT_LIMIT, run_program, wall_limit
from lab.core.numbers import first_number, is_correct, last_number, normalize_number

# ------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    "text, want",
    [
        ("3.50", "3.5"),
        ("4.0", "4"),
        ("1,234.0", "1234"),
        ("1,234", "1234"),
        (" 42 ", "42"),
        ("-3", "-3"),
        ("-0", "0"),
        ("7.", "7"),
        ("0.25", "0.25"),
        ("abc", None),
        ("", None),
        ("nan", None),
        ("inf", None),
        (None, None),
    ],
)
def test_normalize_number(text, want):
    assert normalize_number(text) == want


def test_first_and_last_number():
    assert first_number("12 apples and 30 pears") == "12"
    assert last_number("12 apples and 30 pears") == "30"
    assert first_number("none here") is None
    assert last_number("none here") is None


def test_is_correct():
    assert is_correct("94", "94")
    assert is_correct("1234", "1,234")
    assert is_correct("3.5", "3.50")
    assert is_correct("4", "4.0")
    assert not is_correct("95", "94")
    assert not is_correct(None, "94")
    assert not is_correct("-94", "94")


# ------------------------------------------------------------------------- answer format


@pytest.mark.parametrize(
    "gen, want",
    [
        ("  47\n", "47"),
        (" -3", "-3"),
        (" 1,234", "1234"),
        (" 12 then 99", "12"),
        (" 3.50", "3.5"),
        ("no", None),
        ("", None),
    ],
)
def test_answer_format_takes_first_number(gen, want):
    got = extract(gen, "answer")
    assert got["pred"] == want
    assert (got["error"] is None) == (want is not None)


# ------------------------------------------------------------------------- CoT format


@pytest.mark.parametrize(
    "gen, want",
    [
        (" 9 * 8 = 72. 72 + 33 = 105. The answer is 105.", "105"),
        # the last "answer is" wins, even with a later stray number
        ("The answer is 3. No wait, the answer is 5. Check: 2 + 3", "5"),
        ("the Answer is: $1,234.", "1234"),
        # no "answer is": the last number in the text
        (" 2 + 3 = 5. 5 * 4 = 20.", "20"),
        (" I do not know.", None),
    ],
)
def test_cot_format(gen, want):
    assert extract_cot(gen) == want
    assert extract(gen, "cot")["pred"] == want


def test_cot_prompted_answer_format_uses_cot_extraction():
    gen = " First 2 + 3 = 5, then 5 * 4 = 20. The answer is 20."
    assert extract(gen, "answer")["pred"] == "2"
    assert extract(gen, "answer", cot_prompted=True)["pred"] == "20"


# ------------------------------------------------------------------------- code format


def test_code_format_runs_program_and_takes_last_printed_number():
    program = "\ns1 = 9 * 8\ns2 = s1 + 33\nprint(s1)\nprint(s2)"
    assert extract(program, "code") == {"pred": "105", "error": None, "output": "72\n105\n"}


def test_code_format_last_number_of_last_line():
    assert extract("print('a', 7, 'b', 8)", "code")["pred"] == "8"


def test_code_format_program_error():
    got = extract("print(1)\nprint(1 / 0)", "code")
    assert got["pred"] is None
    assert "ZeroDivisionError" in got["error"]


def test_code_format_no_number_printed():
    got = extract("print('hello')", "code")
    assert got == {"pred": None, "error": "program printed no number", "output": "hello\n"}
    assert extract("x = 1", "code")["pred"] is None


def test_code_format_timeout_is_an_error():
    got = extract("import time\ntime.sleep(30)", "code", timeout_s=1)
    assert got["pred"] is None
    assert "timeout" in got["error"]


# ------------------------------------------------------------------------- sandbox


def test_sandbox_ok():
    res = run_program("print(6 * 7)")
    assert res.error is None
    assert res.stdout == "42\n"
    assert res.isolation == "namespaces"


def test_sandbox_nonzero_exit_reports_last_stderr_line_and_keeps_stdout():
    res = run_program("print('partial')\nraise ValueError('boom')")
    assert res.stdout == "partial\n"
    assert res.error == "ValueError: boom"
    res = run_program("import sys\nsys.exit(3)")
    assert res.error == "exit code 3"


def test_sandbox_busy_loop_is_killed():
    t0 = time.monotonic()
    res = run_program("while True:\n    pass", timeout_s=1)
    assert res.error is not None and res.error.startswith("timeout after")  # CPU or wall
    assert time.monotonic() - t0 < wall_limit(1) + 4


def test_sandbox_sleeping_program_is_killed_by_wall_clock_timeout():
    """The timeout is CPU time; a program that sleeps uses none and is stopped by the
    wall-clock limit (4 x the CPU budget + 5 s)."""
    t0 = time.monotonic()
    res = run_program("import time\ntime.sleep(30)\nprint(1)", timeout_s=1)
    assert (
        res.error
        == f"timeout after {wall_limit(1):g}s of wall-clock time"
        == ("timeout after 9s of wall-clock time")
    )
    assert res.stdout == ""
    assert time.monotonic() - t0 < wall_limit(1) + 4


def test_sandbox_timeout_is_cpu_time_of_all_the_programs_processes():
    """Four processes burning 0.4 s of CPU each: 1.6 s of CPU, over a 1 s budget however
    many cores ran them side by side; a program within its budget passes."""
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4:\n    pass\n"
    forks = (
        "import os\nkids = []\nfor _ in range(3):\n    pid = os.fork()\n    if pid == 0:\n"
        "        kids = None\n        break\n    kids.append(pid)\n"
    )
    wait = "if kids is None:\n    os._exit(0)\nfor k in kids:\n    os.waitpid(k, 0)\n"
    res = run_program(forks + burn + wait + "print('done')", timeout_s=1)
    assert res.error == "timeout after 1s of CPU time" and res.stdout == ""
    res = run_program(burn + "print('done')", timeout_s=1)
    assert res.error is None and res.stdout == "done\n"


def test_sandbox_has_no_network():
    """A fresh network namespace: no interface is up, not even loopback."""
    res = run_program(
        "import socket\nsocket.create_connection(('127.0.0.1', 9))\nprint('connected')"
    )
    assert res.error is not None and "Network is unreachable" in res.error
    assert "connected" not in res.stdout
    res = run_program("import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)")
    assert res.error is not None and "unreachable" in res.error


def test_sandbox_network_namespace_blocks_raw_sockets():
    """Bypassing the socket prelude (via _socket) must not reach a server on the host."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        code = (
            f"import _socket\ns = _socket.socket()\ns.connect(('127.0.0.1', {port}))\nprint('ok')"
        )
        res = run_program(code, timeout_s=5)
    finally:
        server.close()
    assert res.error is not None
    assert "ok" not in res.stdout


def test_sandbox_environment_is_empty(monkeypatch):
    monkeypatch.setenv("SECRET_X", "1")
    res = run_program("import json, os\nprint(json.dumps(dict(os.environ)))\nprint(os.getcwd())")
    assert res.error is None
    env_line, cwd = res.stdout.strip().splitlines()
    env = json.loads(env_line)
    assert "SECRET_X" not in env
    # only what the sandbox sets (LC_CTYPE is set by Python's own locale coercion)
    assert set(env) <= {"PATH", "HOME", "PYTHONHASHSEED", "LC_CTYPE"}
    assert env["PATH"] == "/usr/bin:/bin"
    assert env["HOME"] == cwd != os.environ.get("HOME")


def test_sandbox_cannot_read_parent_environment(monkeypatch):
    monkeypatch.setenv("SECRET_X", "1")
    res = run_program("import os\nprint(open(f'/proc/{os.getppid()}/environ').read())")
    assert res.error is not None
    assert "SECRET_X" not in res.stdout


def test_sandbox_huge_allocation_fails():
    res = run_program("x = bytearray(2 << 30)\nprint('allocated')")
    assert res.error is not None and "MemoryError" in res.error
    assert "allocated" not in res.stdout


def test_sandbox_large_file_write_fails():
    res = run_program("open('big', 'wb').write(b'x' * (4 << 20))\nprint('written')")
    assert res.error is not None
    assert "written" not in res.stdout


def test_sandbox_files_go_to_a_temporary_cwd_that_is_removed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = (
        "import os\n"
        "with open('out.txt', 'w') as f:\n"
        "    f.write('hi')\n"
        "print(os.path.abspath('out.txt'))\n"
        "print(os.getcwd())"
    )
    res = run_program(code)
    assert res.error is None
    written, cwd = res.stdout.strip().splitlines()
    assert os.path.dirname(written) == cwd
    assert os.path.basename(cwd).startswith("ftlab-sandbox-")
    assert os.path.realpath(cwd) != os.path.realpath(tmp_path)
    assert not os.path.exists(written)
    assert not os.path.exists(cwd)
    assert list(tmp_path.iterdir()) == []  # nothing written in the caller's cwd


def test_sandbox_each_run_gets_a_fresh_directory():
    first = run_program("open('state', 'w').write('1')\nprint(1)")
    second = run_program("import os\nprint(os.path.exists('state'))")
    assert first.error is None
    assert second.stdout.strip() == "False"


def test_sandbox_stdout_is_capped():
    res = run_program(f"print('x' * {OUTPUT_LIMIT * 3})")
    assert res.error is None
    assert len(res.stdout) == OUTPUT_LIMIT


def test_sandbox_kills_what_the_program_leaves_behind():
    marker = f"ftlab-child-{uuid.uuid4().hex}"
    code = f"import subprocess\np = subprocess.Popen(['sh', '-c', 'sleep 60; echo {marker}'])"
    result = run_program(code, timeout_s=5)
    assert result.error is None, result  # the program itself finished: not a timeout
    left = []  # pids in the sandbox are its own namespace's: look for the marker instead
    for d in os.listdir("/proc"):
        try:
            if d.isdigit() and marker.encode() in open(f"/proc/{d}/cmdline", "rb").read():
                left.append(d)
        except OSError:
            pass
    assert left == [], "the program's child is still running"
