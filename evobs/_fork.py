"""Fork safety: in a child process, evobs's locks are new and free, and the calls other
threads had in flight at the fork are forgotten.

``fork()`` copies a process's memory but only the thread that forked: a lock another
thread held at that moment stays held forever in the child, and a call another thread
was making never ends there. Every lock evobs owns is a :class:`ForkSafeLock`, renewed
in the child; every call evobs records is in a :class:`~evobs._handlers.CallFrame`,
and frames that belong to other threads are dropped in the child, their calls
forgotten by their signals (the in-flight gauge goes back down, no span is ended for a
thread that no longer exists). Callbacks run from ``os.register_at_fork``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, Final

__all__ = ["ForkSafeLock", "after_fork_in_child"]

_LOCKS: Final[weakref.WeakSet[ForkSafeLock]] = weakref.WeakSet()
_CALLBACKS: Final[list[Callable[[], None]]] = []


class ForkSafeLock:
    """A lock (reentrant if asked) that a forked child gets new and free."""

    __slots__ = ("__weakref__", "_lock", "_reentrant")

    def __init__(self, *, reentrant: bool = False) -> None:
        self._reentrant = reentrant
        self._lock: Any = threading.RLock() if reentrant else threading.Lock()
        _LOCKS.add(self)

    def __enter__(self) -> Any:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return bool(self._lock.acquire(blocking, timeout))

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        """Whether some thread holds it (for tests)."""
        if self._lock.acquire(blocking=False):
            self._lock.release()
            return False
        return True

    def renew(self) -> None:
        """A new, free lock: in the child, whoever held the old one does not exist."""
        self._lock = threading.RLock() if self._reentrant else threading.Lock()


def after_fork_in_child(callback: Callable[[], None]) -> Callable[[], None]:
    """Run ``callback`` in every child process after a fork (after the locks are new)."""
    _CALLBACKS.append(callback)
    return callback


def _in_child() -> None:
    for lock in list(_LOCKS):
        lock.renew()
    for callback in list(_CALLBACKS):
        with contextlib.suppress(Exception):  # a fork must never fail because of evobs
            callback()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_in_child)
