"""A real PostgreSQL server for the tests: Debian's ``postgresql`` binaries (``initdb`` and
``pg_ctl``), a cluster in a temporary folder, on 127.0.0.1 and a free port, as the ``postgres``
user when the tests run as root (PostgreSQL refuses to run as root). No mocks: the cache and
queue suites run against it exactly as against SQLite."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count

INSTALL_HINT = "PostgreSQL is needed for these tests: apt install postgresql (.ci/run does)"


def _binary(name: str) -> str | None:
    """``name`` on PATH, else from Debian's versioned folder (the newest)."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                      key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return versions[-1] if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One cluster; :meth:`database` gives each test a fresh, empty database."""

    def __init__(self) -> None:
        initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
        if not initdb or not pg_ctl:
            raise RuntimeError(INSTALL_HINT)
        self.pg_ctl = pg_ctl
        self.as_user: list[str] = []
        self.folder = tempfile.mkdtemp(prefix="genre-tagger-pg-")
        if os.geteuid() == 0:
            import pwd

            pw = pwd.getpwnam("postgres")
            os.chown(self.folder, pw.pw_uid, pw.pw_gid)
            self.as_user = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}",
                            "--clear-groups", "--"]
        self.data = os.path.join(self.folder, "data")
        self.port = _free_port()
        self._run([initdb, "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                   "--no-sync", "--locale=C"])
        # fsync off: a test server's data is thrown away; sockets in the cluster's own folder.
        self._run([pg_ctl, "-D", self.data, "-l", os.path.join(self.folder, "log"), "-w", "-o",
                   f"-h 127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
                   "start"])
        self._names = count()

    def _run(self, cmd: list[str]) -> None:
        out = subprocess.run([*self.as_user, *cmd], capture_output=True, text=True, cwd="/")
        if out.returncode != 0:
            raise RuntimeError(f"{os.path.basename(cmd[0])} failed: {out.stderr or out.stdout}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A new empty database's URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run([*self.as_user, self.pg_ctl, "-D", self.data, "-m", "immediate", "stop"],
                       capture_output=True, cwd="/")
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()
