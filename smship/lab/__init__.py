"""The local lab: throwaway Debian hosts (systemd-nspawn) on a private bridge.

See :class:`smship.lab.lab.Lab` for the Python API and :mod:`smship.lab.tasks` for
the `smship lab ...` commands.
"""

from smship.lab.lab import Lab, HostStatus, UpResult
from smship.lab.system import LabError

__all__ = ["Lab", "HostStatus", "UpResult", "LabError"]
