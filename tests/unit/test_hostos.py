"""What hosts' distributions decide: versions read from facts, mixed fleets refused, hosts-os judged."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest

from smship.checklist.hostos import hosts_os
from smship.errors import SmshipError
from smship.hostos import HostOS, debian_version, python_packages, require_one_python, \
    require_python_available, require_release_fits, requested_python, wheel_target
from smship.inventory import App
from smship.remote.client import Interpreter, OSRelease
from smship.release.wheelhouse import BOOKWORM, TRIXIE, require_python, target_for_version

DEB12 = HostOS("old1", "debian", "12", "bookworm", "Debian GNU/Linux 12 (bookworm)", glibc="2.36",
               python_version="3.11.2", candidates={"postgresql": "15+248", "nginx": "1.22.1-9",
                                                    "python3.13": None})
DEB13 = HostOS("new1", "debian", "13", "trixie", "Debian GNU/Linux 13 (trixie)", glibc="2.41",
               python_version="3.13.5", candidates={"postgresql": "17+278", "nginx": "1.26.3-3+deb13u1",
                                                    "python3.13": "3.13.5-2"})


def test_debian_versions_parse():
    assert debian_version("1:1.26.3-3+deb13u1") == (1, 26, 3)
    assert debian_version("17+278") == (17,)
    assert debian_version("nginx") is None and debian_version(None) is None


def test_postgres_major_comes_from_the_host():
    assert DEB12.postgres_major(None) == 15 and DEB13.postgres_major(None) == 17
    assert DEB13.postgres_major(16) == 16
    assert dataclasses.replace(DEB13, postgres_clusters=(15,)).postgres_major(None) == 15
    bare = dataclasses.replace(DEB13, candidates={})
    with pytest.raises(SmshipError, match="new1: cannot tell which PostgreSQL.*db.postgres_version"):
        bare.postgres_major(None)


def test_nginx_gates_on_version():
    assert DEB12.nginx_facts() == {"version": "1.22.1", "http2_directive": False}
    assert DEB13.nginx_facts()["http2_directive"] is True
    # The installed nginx counts before what apt offers.
    assert dataclasses.replace(DEB13, nginx_installed="1.24.0").nginx_facts()["http2_directive"] is False


def test_app_python_accepts_a_version_or_a_path():
    assert App(name="a").interpreter == "/usr/bin/python3"
    assert python_packages(App(name="a")) == ["python3", "python3-venv"]
    app = App(name="a", python="3.13")
    assert requested_python(app) == "3.13" and app.interpreter == "/usr/bin/python3.13"
    assert python_packages(app) == ["python3.13", "python3.13-venv"]
    assert requested_python(App(name="a", python="/opt/py/bin/python3")) is None
    for bad in ("python3", "3", "3.13.1", "/usr/bin/py thon", "/usr/bin/python3\n"):
        with pytest.raises(ValueError, match="neither a Python version|control characters"):
            App(name="a", python=bad)


def test_a_version_the_distribution_lacks_is_refused_before_provisioning():
    app = App(name="a", python="3.13")
    require_python_available(app, {"new1": DEB13})
    bare12 = dataclasses.replace(DEB12, python_version=None)
    with pytest.raises(SmshipError, match=r"'3\.13'.*old1 \(Debian GNU/Linux 12 \(bookworm\)\) offers no "
                                          r"python3\.13 package; nothing was changed"):
        require_python_available(app, {"new1": DEB13, "old1": bare12})


def test_a_fleet_mixing_pythons_is_refused_naming_hosts_and_versions():
    app = App(name="a")
    assert require_one_python(app, {"new1": "3.13", "new2": "3.13"}) == "3.13"
    with pytest.raises(SmshipError) as refused:
        require_one_python(app, {"old1": "3.11", "new1": "3.13", "new2": "3.13"})
    message = str(refused.value)
    assert "3.11: old1; 3.13: new1, new2" in message and "nothing was changed" in message
    with pytest.raises(SmshipError, match="old1: no interpreter at /usr/bin/python3"):
        require_one_python(app, {"old1": None, "new1": "3.13"})


def test_wheels_target_the_app_hosts_interpreter():
    target = wheel_target(App(name="a"), {"new1": Interpreter("3.13.5", "x86_64", "2.41"),
                                          "new2": Interpreter("3.13.3", "x86_64", "2.40")})
    assert (target.python_version, target.python_full_version, target.glibc) == ("3.13", "3.13.3", (2, 40))
    assert target.abi == "cp313" and "manylinux_2_40_x86_64" in target.platforms()
    with pytest.raises(SmshipError, match="different Python versions"):
        wheel_target(App(name="a"), {"old1": Interpreter("3.11.2", "x86_64", "2.36"),
                                     "new1": Interpreter("3.13.5", "x86_64", "2.41")})


def test_a_prebuilt_release_for_another_python_is_refused():
    class Built:
        id = "20261201-abc"
        manifest = {"python": "3.11"}
    require_release_fits(Built, target_for_version("3.11"))
    with pytest.raises(SmshipError, match="built for CPython 3.11 but the app hosts run 3.13.*--python 3.13"):
        require_release_fits(Built, TRIXIE)


def test_the_locks_requires_python_is_compared_before_building():
    require_python(">=3.12", "uv.lock", TRIXIE)
    with pytest.raises(SmshipError) as refused:
        require_python(">=3.12", "uv.lock", BOOKWORM)
    message = str(refused.value)
    assert ">=3.12" in message and "3.11.2" in message and "app.python" in message and "uv.lock" in message
    require_python(None, "requirements.txt", BOOKWORM)


def test_build_without_hosts_names_the_debian_pythons():
    assert target_for_version("3.13") == TRIXIE and target_for_version("3.11") == BOOKWORM
    with pytest.raises(SmshipError, match="3.11, 3.13"):
        target_for_version("3.12")


class Facts:
    """The part of check facts hosts-os reads."""

    def __init__(self, hosts: dict, app_hosts: list[str]):
        self.hosts = hosts
        self._app = app_hosts

    def app_hosts(self):
        return [type("H", (), {"name": n}) for n in self._app]


def os_answer(distro: str, version: str, name: str, python: str | None):
    """The part of a host's checkfacts answer hosts-os reads."""
    return SimpleNamespace(os=OSRelease(distro, version, name, python))


def test_hosts_os_check():
    d13 = os_answer("debian", "13", "Debian GNU/Linux 13 (trixie)", "3.13.5")
    d12 = os_answer("debian", "12", "Debian GNU/Linux 12 (bookworm)", "3.11.2")
    status, reason, _ = hosts_os(Facts({"lab1": d13, "lab2": d13}, ["lab2"]))
    assert status == "pass" and reason == "lab1, lab2: Debian GNU/Linux 13 (trixie), supported"
    # A db host on 12 beside app hosts on 13 is fine: the app's Python is one.
    status, _, _ = hosts_os(Facts({"db1": d12, "web1": d13}, ["web1"]))
    assert status == "pass"
    status, reason, fix = hosts_os(Facts({"old1": d12, "new1": d13}, ["old1", "new1"]))
    assert status == "fail" and "old1: Python 3.11; new1: Python 3.13" in reason and "app.python" in fix
    ubuntu = os_answer("ubuntu", "24.04", "Ubuntu 24.04.1 LTS", "3.12.3")
    status, reason, fix = hosts_os(Facts({"u1": ubuntu}, ["u1"]))
    assert status == "warn" and "u1: Ubuntu 24.04.1 LTS, not tested by smship" == reason
    assert "Debian 12 (bookworm), Debian 13 (trixie)" in fix
