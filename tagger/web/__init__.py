"""The page: see what genre-tagger did to the library, listen, correct and revert, in a browser
(``genre-tagger serve``; the daemon too, when its config sets ``listen``).

Needs the ``web`` extra (Starlette, Jinja2, uvicorn): the core install stays without them, and
:func:`require` says what to install. The server is uvicorn on a socket bound here first, so an
address in use is said in words before anything starts.
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
import threading
from dataclasses import dataclass
from types import FrameType
from typing import Any

from tagger.errors import PageUnavailable, install_hint
from tagger.settings import DEFAULT_LISTEN, Settings, parse_listen
from tagger.tags.safe_write import quiet_lease_breaks

log = logging.getLogger("genre-tagger")


def require() -> None:
    """PageUnavailable, in words, when the web extra is not installed."""
    from tagger.analysis.model.runner import installed

    missing = [m for m in ("starlette", "jinja2", "uvicorn", "multipart") if not installed(m)]
    if missing:
        raise PageUnavailable(f"the page needs {', '.join(missing)}: {install_hint('web')}")


def bind(listen: str) -> socket.socket:
    """A listening socket on ``listen`` (HOST:PORT), or PageUnavailable saying why not."""
    parsed = parse_listen(listen or DEFAULT_LISTEN)
    if parsed is None:
        raise PageUnavailable(f"'listen' must be HOST:PORT, not {listen!r}")
    host, port = parsed
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        hint = (": the service's unit allows it no network sockets (install it with "
                "LISTEN=HOST:PORT systemd/install.sh, README \"The page\")"
                if e.errno in (errno.EAFNOSUPPORT, errno.EPERM) else "")
        raise PageUnavailable(f"cannot listen on {listen}: {e.strerror or e}{hint}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(64)
    except OSError as e:
        sock.close()
        why = ("it is in use (another genre-tagger serve or the daemon's page?)"
               if e.errno == errno.EADDRINUSE else
               "ports below 1024 need root; choose another" if e.errno == errno.EACCES
               else e.strerror or str(e))
        raise PageUnavailable(f"cannot listen on {listen or DEFAULT_LISTEN}: {why}") from None
    sock.set_inheritable(True)
    return sock


def _server(settings: Settings, cache: Any) -> Any:
    import uvicorn

    from tagger.web.app import create_app

    config = uvicorn.Config(create_app(settings, cache), log_level="warning", access_log=False,
                            proxy_headers=False, server_header=False, lifespan="off")
    return uvicorn.Server(config)


def serve(settings: Settings, cache: Any, sock: socket.socket) -> None:
    """Serve the page on ``sock`` until SIGINT or SIGTERM, then return (exit 0).

    uvicorn handles the signals while it runs, then restores the handlers it found and
    raises the signal again: these handlers (which also cover the start-up, before uvicorn's
    are in place) make that a clean stop instead of a death by the signal."""
    server = _server(settings, cache)

    def stop(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    quiet_lease_breaks()  # the page's writes run in worker threads
    server.run(sockets=[sock])


@dataclass
class Running:
    """The daemon's page, served from a thread of its own."""

    server: Any
    thread: threading.Thread
    cache: Any  # its own, closed when it stops

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.cache.close()


def start(settings: Settings, cache: Any) -> Running:
    """The page in a thread (the daemon's ``listen``) over ``cache``, which it closes when it
    stops: uvicorn leaves signals to the main thread there, so the daemon's SIGTERM handling
    is unchanged."""
    try:
        require()
        sock = bind(settings.listen)
    except PageUnavailable:
        cache.close()
        raise
    server = _server(settings, cache)
    quiet_lease_breaks()  # the page's writes run in worker threads
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="page",
                              daemon=True)
    thread.start()
    return Running(server, thread, cache)


__all__ = ["Running", "bind", "require", "serve", "start"]
