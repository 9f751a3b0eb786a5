"""Ending smship's process as soon as its command is over.

An ordinary interpreter exit frees every module (the SSH library, invoke, pydantic,
jinja2...) object by object: 70-90 ms of a no-op ``provision`` or ``status``
of three hosts, which take 0.7-0.8 s in all. The kernel frees a process's
memory at once, so smship does what a clean exit owes (the atexit handlers,
output flushed) and leaves the rest to it.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import Callable, NoReturn


def exit_status(code: object) -> int:
    """The status Python's own exit gives ``SystemExit(code)``: None is 0, an int is itself, anything
    else is printed on stderr and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def run_then_exit(command: Callable[[], object]) -> NoReturn:
    """Run ``command`` (a program's main), then end the process with its exit status.

    Should a thread other than daemons still run, Python's ordinary exit ends
    the process instead, since it waits for them. An exception other than
    SystemExit also takes the ordinary way, with its traceback.
    """
    try:
        command()
        code: object = None
    except SystemExit as exc:
        code = exc.code
    main = threading.current_thread()
    if any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate()):
        raise SystemExit(code)
    status = exit_status(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):    # a closed stream: nothing of ours is left in it
            pass
    os._exit(status)
