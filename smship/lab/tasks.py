"""`smship lab ...`: the lab's Invoke tasks.

    smship lab up [--hosts N] [--image base|fat] [--distro trixie|bookworm] [--app PATH] [--dir DIR]
    smship lab status | down
    smship lab stop|start|kill|partition|heal HOST
"""

from __future__ import annotations

from invoke import Collection, task
from invoke.exceptions import Exit
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from smship.lab.image import DEFAULT_DISTRO, DISTROS, IMAGE_NAMES
from smship.lab.lab import Lab
from smship.lab.system import LabError

console = Console(highlight=False)

DIR_HELP = ("lab directory (default: $SMSHIP_LAB_DIR or /var/lib/smship/lab); "
            "bridge and subnet come from $SMSHIP_LAB_BRIDGE / $SMSHIP_LAB_SUBNET")
HOST_HELP = "lab host name, e.g. lab1 (see `smship lab status`)"


def _reporter(host: str | None, message: str) -> None:
    if host:
        console.print(f"[bold cyan]{host:>6}[/]  {message}")
    else:
        console.print(f"[dim]{'lab':>6}[/]  {message}")


def _lab(dir: str | None) -> Lab:
    return Lab(dir, reporter=_reporter)


def _fail(exc: LabError) -> Exit:
    console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
    return Exit(code=1)


@task(auto_shortflags=False, help={
    "hosts": "number of hosts to boot (lab1..labN; default 3)",
    "image": f"image to boot: {' or '.join(IMAGE_NAMES)} (fat has nginx, postgresql, "
             "redis-server, pgbackrest baked in; default base)",
    "app": "app source directory written into the inventory (default: current directory)",
    "distro": f"Debian release of the hosts: {' or '.join(DISTROS)} (Debian 13 / 12; default "
              f"{DEFAULT_DISTRO}, or $SMSHIP_LAB_DISTRO), or a comma list naming one per host for a mixed fleet; images "
              "are built from this machine's own apt mirror and cached per release",
    "dir": DIR_HELP,
})
def up(c, hosts=3, image="base", app=None, dir=None, distro=None):
    """Boot throwaway Debian hosts and write inventory.yml, ssh_config, known_hosts."""
    try:
        lab = _lab(dir)
        distro = distro or lab.settings.lab_distro
        result = lab.up(hosts=int(hosts), image_name=image, app=app, distro=distro)
    except LabError as exc:
        raise _fail(exc)
    console.print(f"[green]lab up[/]: {len(result.hosts)} host(s) in {result.seconds:.1f} s "
                  f"(image {result.image}{', built' if result.image_built else ', cached'}; "
                  f"Debian {', '.join(dict.fromkeys(result.distros))})")
    console.print(f"  inventory:  {lab.inventory}")
    console.print(f"  ssh:        ssh -F {lab.ssh_config} {result.hosts[0][0]}")


@task(auto_shortflags=False, help={"dir": DIR_HELP})
def down(c, dir=None):
    """Remove every lab host, the bridge and the NAT rules; restore ip_forward."""
    try:
        removed = _lab(dir).down()
    except LabError as exc:
        raise _fail(exc)
    console.print("[green]lab down[/]" + ("" if removed else ": nothing was running"))


@task(auto_shortflags=False, help={"dir": DIR_HELP})
def status(c, dir=None):
    """Show each lab host: address, roles, running or not, ssh answering."""
    try:
        lab = _lab(dir)
        if not lab.is_up():
            console.print(f"lab is down ({lab.dir})")
            return
        rows = lab.status()
    except LabError as exc:
        raise _fail(exc)
    table = Table(title=f"smship lab ({lab.dir}, bridge {lab.net.bridge})")
    for col in ("host", "address", "roles", "state", "ssh"):
        table.add_column(col)
    for row in rows:
        state = ("partitioned" if row.partitioned else "running") if row.running else "stopped"
        table.add_row(row.name, row.address, ",".join(row.roles),
                      f"[green]{state}[/]" if state == "running" else f"[red]{state}[/]",
                      "[green]yes[/]" if row.ssh else "[red]no[/]")
    console.print(table)


FAULTS = {
    "stop": "Clean poweroff of one host (its disk and keys are kept).",
    "start": "Boot a stopped or killed host again and wait for ssh.",
    "kill": "Power loss: the host dies at once, nothing is shut down cleanly.",
    "partition": "Cut one host's network (it keeps running, unreachable).",
    "heal": "Restore a partitioned host's network.",
}


def _fault_task(method: str, summary: str):
    def fault(c, host, dir=None):
        try:
            getattr(_lab(dir), method)(host)
        except LabError as exc:
            raise _fail(exc)

    fault.__doc__ = summary
    return task(fault, name=method, auto_shortflags=False, positional=["host"],
                help={"host": HOST_HELP, "dir": DIR_HELP})


ns = Collection("lab")
for _t in (up, down, status, *(_fault_task(m, doc) for m, doc in FAULTS.items())):
    ns.add_task(_t)
