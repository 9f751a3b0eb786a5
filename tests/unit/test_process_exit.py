"""smship's quick exit keeps what an ordinary exit owes: the status, the output, atexit, running threads."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def ends(body: str) -> subprocess.CompletedProcess:
    program = textwrap.dedent("""
        import atexit, sys, threading, time
        from smship.process_exit import run_then_exit
        atexit.register(lambda: print("atexit ran", flush=True))
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("code, status, stderr", [("None", 0, ""), ("3", 3, ""), ("'no such host'", 1, "no such host\n")])
def test_the_status_is_the_one_python_would_give(code, status, stderr):
    ended = ends(f"""
        def command():
            print("buffered, not flushed")   # stdout is a pipe here: block-buffered
            raise SystemExit({code})
        run_then_exit(command)
        print("never printed")
    """)
    assert (ended.returncode, ended.stdout, ended.stderr) == (status, "buffered, not flushed\natexit ran\n", stderr)


def test_a_command_that_returns_ends_with_status_0_after_atexit():
    ended = ends("""
        run_then_exit(lambda: print("done"))
    """)
    assert (ended.returncode, ended.stdout) == (0, "done\natexit ran\n")


def test_a_thread_still_running_is_waited_for_as_python_would():
    ended = ends("""
        def late():
            time.sleep(0.3)
            print("the thread finished", flush=True)
        run_then_exit(lambda: threading.Thread(target=late).start())
    """)
    assert (ended.returncode, ended.stdout) == (0, "the thread finished\natexit ran\n")


def test_another_exception_ends_the_ordinary_way_with_its_traceback():
    ended = ends("""
        def command():
            raise RuntimeError("boom")
        run_then_exit(command)
    """)
    assert ended.returncode == 1 and "RuntimeError: boom" in ended.stderr and ended.stdout == "atexit ran\n"
