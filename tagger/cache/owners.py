"""Who holds a queue claim or a write intent in a shared cache, and whether it is gone.

Several processes on several machines may share one database (PostgreSQL). Each names itself
``host:pid:start:place:nonce``. ``place`` says where its pid means something: this install
(``/etc/machine-id``, else the host name), this boot (``boot_id``) and this pid namespace (a
container has its own). Only a holder in the same place can be asked whether it still runs
(``kill(pid, 0)``); one from an earlier boot of this machine is gone; any other holder (another
machine, another container, two machines cloned with one name) is trusted until its lease ends.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from functools import cache
from pathlib import Path
from typing import NamedTuple

#: A claim or a write intent not renewed for this long is free again: its holder died on a
#: machine that cannot be asked (a daemon renews its claims every ``HEARTBEAT`` seconds).
LEASE = 900.0
#: How often a daemon renews its claims and says it is alive.
HEARTBEAT = 30.0


class Owner(NamedTuple):
    host: str
    pid: int
    machine: str
    boot: str
    pidns: str


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


@cache
def _here() -> tuple[str, str, str]:
    machine = (_read("/etc/machine-id") or _read("/var/lib/dbus/machine-id"))[:12]
    boot = _read("/proc/sys/kernel/random/boot_id").replace("-", "")[:12]
    try:
        pidns = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        pidns = ""
    # without a machine id, the host name ("h-"): it may not be unique, so boots say nothing
    return machine or "h-" + socket.gethostname().replace(":", "_").replace(".", "_"), boot, pidns


def process_id(started: float | None = None) -> str:
    """This process's name in a shared cache (unique: a nonce ends it)."""
    machine, boot, pidns = _here()
    start = int(started if started is not None else time.time())
    return (f"{socket.gethostname().replace(':', '_')}:{os.getpid()}:{start}:"
            f"{machine}.{boot}.{pidns}:{secrets.token_hex(4)}")


def parse(owner: str) -> Owner | None:
    parts = owner.split(":")
    if len(parts) != 5 or not parts[1].isdigit() or parts[3].count(".") != 2:
        return None
    machine, boot, pidns = parts[3].split(".")
    return Owner(parts[0], int(parts[1]), machine, boot, pidns)


def here(owner: Owner) -> bool:
    """Same install, boot and pid namespace: its pid can be asked."""
    machine, boot, pidns = _here()
    return bool(boot and pidns) and (owner.machine, owner.boot, owner.pidns) == (machine, boot, pidns)


def gone(owner: str) -> bool:
    """Known to have ended: in this place with no such process, or from an earlier boot of this
    machine. Unknown (elsewhere) is not gone: its lease decides."""
    o = parse(owner)
    if o is None:
        return False
    machine, boot, _ = _here()
    if o.machine == machine and not machine.startswith("h-") and boot and o.boot and o.boot != boot:
        return True  # this install, an earlier boot: every process of it has ended
    if not here(o):
        return False
    try:
        os.kill(o.pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process: it exists
        return False
    return False
