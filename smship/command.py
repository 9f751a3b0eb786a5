"""Commands as data.

Builders all over smship return :class:`Command` values instead of strings so
that quoting happens in exactly one place and tests can inspect what would
run without any host.  Every argument is quoted with :func:`shlex.quote`, so a
value that came from the inventory can never become shell syntax.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Iterable


@dataclass(frozen=True)
class Command:
    """One remote command: an argv, optionally run as another user.

    ``stdin`` carries data that must not appear on a command line (secrets,
    file contents); it is streamed to the remote process.
    """

    argv: tuple[str, ...]
    sudo: bool = False
    user: str | None = None
    stdin: bytes | None = field(default=None, repr=False, compare=False)
    description: str = ""

    def __post_init__(self) -> None:
        if not self.argv:
            raise ValueError("a command needs at least one argument")

    def line(self) -> str:
        """The shell line, without any sudo wrapper (the SSH layer adds it)."""
        return shlex.join(self.argv)

    def __str__(self) -> str:
        return self.description or self.line()


def cmd(*argv: str | int, sudo: bool = False, user: str | None = None,
        stdin: bytes | None = None, description: str = "") -> Command:
    """Build a :class:`Command` from arguments; numbers are turned into text."""
    return Command(tuple(str(a) for a in argv), sudo=sudo, user=user,
                   stdin=stdin, description=description)


def script(body: str, *, sudo: bool = False, user: str | None = None,
           stdin: bytes | None = None, description: str = "",
           args: Iterable[str] = ()) -> Command:
    """A small POSIX shell script run as ``sh -c BODY smship ARGS...``.

    Values must reach the script as positional arguments (``"$1"``), never
    by formatting them into ``body``; that keeps inventory values data.
    """
    return Command(("sh", "-c", body, "smship", *args), sudo=sudo, user=user,
                   stdin=stdin, description=description)


def in_turn(*commands: Command, description: str) -> Command:
    """One exchange running ``commands`` one after another, each its argv whole, stopping at the first that
    fails. They must run as the same user and read no stdin."""
    if not commands or any(c.stdin is not None for c in commands):
        raise ValueError("in_turn takes one or more commands that read no stdin")
    if len({(c.sudo, c.user) for c in commands}) != 1:
        raise ValueError("in_turn takes commands run as one user")
    body = " && ".join(c.line() for c in commands)
    return Command(("sh", "-c", body), sudo=commands[0].sudo, user=commands[0].user, description=description)
