"""Who may use a store file when: one lock shared by every process and thread of one machine.

A process holds the file **shared** (many readers at once) or **exclusive** (one writer, no
reader) through an operating-system lock on ``<file>.lock``, taken before the file is opened
and released only after it is closed, so that nobody opens the file while another process's
close still writes to it. Waiting is done by the kernel (a blocking ``flock``), not by polling,
and in order of arrival: every waiter joins a queue (``<file>.lock.queue`` names its last
node file, ``<file>.lock.queue.<pid>-<random>``) and blocks on the node of the waiter before
it only. So a writer waits for the readers and writers that came before it, never for those
that come after, and no lock is left to a race among all waiters.

Within one process, one :class:`FileAccess` per file (whatever the number of store objects)
owns that lock and the open handle; one thread at a time uses it, and that thread may nest
sessions: a write inside a read session reopens the file exclusively.

Where ``fcntl`` does not exist (Windows), ``filelock.FileLock`` is used instead: exclusive for
readers too, waited for by polling.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

__all__ = ["FileAccess", "LockTimeout", "file_access"]

logger = logging.getLogger("metaxy_core.store")

T = TypeVar("T")


class LockTimeout(Exception):
    """The lock was not granted in time (the caller turns it into its own error)."""


class _OSLock:
    """The inter-process part: ``flock`` on POSIX, ``filelock.FileLock`` elsewhere."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._fallback: Any = None
        try:
            import fcntl  # POSIX only: imported here so that the package imports everywhere
        except ImportError:
            import filelock

            self._fcntl: Any = None
            self._fallback = filelock.FileLock(path)
        else:
            self._fcntl = fcntl

    def acquire(self, exclusive: bool, timeout: float) -> float:
        """Take the lock; returns the seconds waited. Raises :class:`LockTimeout`."""
        start = time.monotonic()
        if self._fcntl is None:
            import filelock

            try:
                self._fallback.acquire(timeout=timeout)
            except filelock.Timeout:
                raise LockTimeout from None
            return time.monotonic() - start
        fcntl = self._fcntl
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        node, previous = self._join_queue()

        def take(fd: int, flags: int) -> None:
            """Wait until the waiter before us has its lock, then take ours."""
            if previous is not None:
                try:
                    before = os.open(previous, os.O_RDONLY)
                except FileNotFoundError:
                    pass  # it has passed and cleaned up
                else:
                    try:
                        fcntl.flock(before, fcntl.LOCK_SH | flags)
                    finally:
                        os.close(before)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(previous)  # in case its process died before cleaning up
            fcntl.flock(fd, mode | flags)

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            take(fd, fcntl.LOCK_NB)  # the common case: nobody else is there
        except BlockingIOError:
            try:
                self._wait(take, fd, node, timeout)
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            os.close(fd)
            self._leave_queue(node)
            raise
        else:
            self._leave_queue(node)
        self._fd = fd
        return time.monotonic() - start

    def _join_queue(self) -> tuple[tuple[int, str], str | None]:
        """Take a place in the queue: a new node file, locked until we hold our lock, named in
        ``<lock>.queue``; returns it and the node of the waiter before us (``None``: nobody).

        The queue makes waiting first come, first served: each waiter blocks on the node of
        the one before it only, so the kernel never wakes several waiters to race for a lock.
        """
        fcntl = self._fcntl
        tail = os.open(f"{self.path}.queue", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(tail, fcntl.LOCK_EX)  # held for a read and a write of a few bytes
            try:
                found = os.pread(tail, 4096, 0)
                previous = found.decode(errors="replace") or None
                name = f"{self.path}.queue.{os.getpid()}-{secrets.token_hex(8)}"
                node = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
                fcntl.flock(node, fcntl.LOCK_EX)
                # Names differ in length only with the pid's digits: the file is rewritten in
                # place and truncated only when the new name is shorter (a truncate frees and
                # reallocates the file's block, which waits for a busy disk's journal: 0.3 s).
                if len(found) > len(name.encode()):
                    os.ftruncate(tail, 0)
                os.pwrite(tail, name.encode(), 0)
            finally:
                fcntl.flock(tail, fcntl.LOCK_UN)
        finally:
            os.close(tail)
        return (node, name), previous

    def _leave_queue(self, node: tuple[int, str]) -> None:
        """Let the waiter after us go on (it then takes its lock, or waits for ours)."""
        fd, name = node
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        os.close(fd)

    def _wait(
        self, take: Callable[[int, int], None], fd: int, node: tuple[int, str], timeout: float
    ) -> None:
        """Block in the kernel; with a finite timeout, in a helper thread the caller stops
        waiting for (a blocking ``flock`` cannot be interrupted). The helper takes the lock on
        its own descriptor of the lock file and leaves the queue; if the caller gave up by
        then, it releases the lock at once."""
        if math.isinf(timeout):
            try:
                take(fd, 0)
            finally:
                self._leave_queue(node)
            return
        guard = threading.Lock()
        done = threading.Event()
        state: dict[str, Any] = {"abandoned": False, "error": None}
        own = os.dup(fd)

        def helper() -> None:
            try:
                take(own, 0)
            except BaseException as exc:  # handed to the caller
                state["error"] = exc
            finally:
                self._leave_queue(node)
            with guard:
                if state["abandoned"]:
                    os.close(own)  # the last descriptor of the lock file: releases it
                    return
                done.set()

        threading.Thread(target=helper, name=f"lock {self.path}", daemon=True).start()
        if not done.wait(timeout):
            with guard:
                if not done.is_set():
                    state["abandoned"] = True
                    raise LockTimeout
        os.close(own)  # the lock stays with ``fd``: both descriptors share one open file
        if state["error"] is not None:
            raise state["error"]

    def forget(self) -> None:
        """Drop this process's copy of the lock without releasing the owner's (after fork)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # the parent's descriptor still holds the lock

    def release(self) -> None:
        if self._fcntl is None:
            self._fallback.release()
            return
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # releases the lock


class FileAccess(Generic[T]):
    """One file's lock and open handle in this process, shared by every store object on it.

    ``session(write)`` yields the handle, opened by ``opener(write)`` under the matching lock;
    nested sessions of the owning thread reuse it (a write inside a read session reopens it
    exclusively). The handle is closed, then the lock released, when the outermost session or
    :meth:`hold` block ends.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._thread = threading.RLock()  # one thread at a time; reentrant for nesting
        self._os = _OSLock(f"{path}.lock")
        self._depth = 0
        self._write = False
        self._handle: T | None = None
        self._close: Callable[[T], None] | None = None

    @contextmanager
    def hold(self, timeout: float) -> Iterator[None]:
        """Keep whatever session opens inside this block open until it ends."""
        if not self._thread.acquire(timeout=-1 if math.isinf(timeout) else timeout):
            raise LockTimeout
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            try:
                if self._depth == 0:
                    self._drop()
            finally:
                self._thread.release()

    @contextmanager
    def session(
        self,
        write: bool,
        timeout: float,
        opener: Callable[[bool], T],
        close: Callable[[T], None],
    ) -> Iterator[T]:
        deadline = time.monotonic() + timeout
        with self.hold(timeout):
            if self._handle is not None and write and not self._write:
                self._drop()  # upgrade: a read session cannot write; reopen exclusively
            if self._handle is None:
                waited = self._os.acquire(write, max(deadline - time.monotonic(), 0.0))
                if waited > 0.001:
                    logger.debug(
                        "waited %.3f s for the %s lock on %s",
                        waited,
                        "exclusive" if write else "shared",
                        self.path,
                        extra={"metaxy_lock_wait": waited, "metaxy_lock_write": write},
                    )
                try:
                    self._handle = opener(write)
                except BaseException:
                    self._os.release()
                    raise
                self._write, self._close = write, close
            yield self._handle

    def _drop(self) -> None:
        handle, close = self._handle, self._close
        self._handle = self._close = None
        if handle is None or close is None:
            return
        try:
            close(handle)
        finally:
            self._os.release()


_ACCESS: dict[str, FileAccess[Any]] = {}
_ACCESS_GUARD = threading.Lock()
_INHERITED: list[Any] = []  # a forked child's copies of its parent's open handles


def _forget_after_fork() -> None:
    """A process forked while its parent held a store file owns neither the lock nor the
    handle: its copy of the lock's descriptor is closed (or the lock would outlive the parent's
    release), and the handle is kept, unused, so that it is never closed here (closing a DuckDB
    connection may write a checkpoint into the parent's file)."""
    global _ACCESS_GUARD
    for access in _ACCESS.values():
        if access._handle is not None:
            _INHERITED.append(access._handle)
        access._os.forget()
    _ACCESS.clear()
    _ACCESS_GUARD = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def file_access(path: str) -> FileAccess[Any]:
    """The process's one :class:`FileAccess` of ``path``.

    A process-wide table on purpose: two store objects on one file must share one lock and
    one handle, or they would wait for each other (``flock`` locks per open file) and DuckDB
    would refuse a read-only and a read-write connection to one file in one process.
    """
    key = os.path.realpath(path)
    with _ACCESS_GUARD:
        access = _ACCESS.get(key)
        if access is None:
            access = _ACCESS[key] = FileAccess(key)
        return access
