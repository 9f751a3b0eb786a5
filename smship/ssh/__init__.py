"""The SSH layer: the only package in smship that talks to fabric or paramiko.

Everything above this package hands over :class:`~smship.command.Command`
values; it turns them into quoted remote lines, runs them over one
long-lived connection per host and reports :class:`Result` values.  By
concern:

- :mod:`.values`: targets, options, endpoints, results and errors;
- :mod:`.argv`: pure builders (SSH-config resolution, sudo wrapping, the
  ``ssh``/``rsync`` argv), testable without a host;
- :mod:`.hostkeys`: host keys are checked strictly unless the operator opts
  in to trusting new hosts; a changed key is always refused;
- :mod:`.rsync`: rsync's statistics and failures in one line naming the host;
- :mod:`.channel`: one command on its own session channel, begun ahead of
  the rest of its stdin if need be;
- :mod:`.fleet`: :class:`Fleet` (connections, commands, uploads, rsync,
  parallel calls), :class:`Begun` and :class:`FleetResult`.

The real ``rsync`` binary is run with an ``ssh`` command line generated from
the same options, so both paths reach the same host, as the same user, with
the same key checks.
"""

from smship.ssh.argv import (parse_jump, remote_line, resolve, rsync_argv, ssh_argv, stream_argv,
                             until_disconnected)
from smship.ssh.fleet import WAIT_NOTICE_EVERY, Begun, Fleet, FleetResult
from smship.ssh.hostkeys import read_known_hosts
from smship.ssh.rsync import parse_rsync_stats
from smship.ssh.values import (NO_EXIT, CommandError, ConnectError, Endpoint, Result, RsyncResult, SSHError,
                               SSHOptions, SudoPasswordRequired, Target)

__all__ = [
    "Target",
    "SSHOptions",
    "Endpoint",
    "Result",
    "RsyncResult",
    "SSHError",
    "ConnectError",
    "CommandError",
    "SudoPasswordRequired",
    "NO_EXIT",
    "Fleet",
    "Begun",
    "FleetResult",
    "resolve",
    "parse_jump",
    "remote_line",
    "ssh_argv",
    "stream_argv",
    "until_disconnected",
    "rsync_argv",
    "parse_rsync_stats",
    "read_known_hosts",
    "WAIT_NOTICE_EVERY",
]
