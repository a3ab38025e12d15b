"""A stop (or reload) request that signal handlers may set at any moment.

A Python signal handler runs in the main thread between two bytecodes, possibly while that
thread is inside ``threading.Event.wait()`` or ``.set()`` holding the event's lock: a handler
calling ``Event.set()`` then waits on that lock for ever (seen: 1 daemon in 15 hung after a
SIGTERM, nested handler frames in py-spy). A :class:`Flag` holds no lock: setting it is one
attribute store, safe to re-enter; waiting on it polls (a tenth of a second, far below anything
a stop or reload must meet).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any, Protocol

#: How often :meth:`Flag.wait` looks.
POLL_SECONDS = 0.1


class Stop(Protocol):
    """What a long job asks of its stop request (a :class:`Flag`, or a ``threading.Event``)."""

    def is_set(self) -> bool: ...


class Flag:
    """``threading.Event``'s ``set``/``is_set``/``clear``/``wait``, without a lock."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        """True once set, or False after ``timeout`` seconds."""
        end = time.monotonic() + timeout
        while not self._set:
            left = end - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(POLL_SECONDS, left))
        return True


def on_signals(actions: dict[signal.Signals, Callable[[], None]]) -> dict[signal.Signals, Any]:
    """Install handlers that only call ``actions`` (each must be re-entrant: set a flag);
    returns the previous handlers, for :func:`restore`."""
    previous = {}
    for sig, action in actions.items():
        previous[sig] = signal.signal(sig, lambda *_, act=action: act())
    return previous


def restore(previous: dict[signal.Signals, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


__all__ = ["Flag", "Stop", "on_signals", "restore"]
