"""Exclusive locks on output targets: one run owns a file while it writes it.

A run that writes ``path`` (a solve with a checkpoint, a simulation, one point of a sweep) holds
the lock ``.<name>.lock`` beside it for the whole run (:func:`hold`).  The lock is an OS file
lock (``flock`` through the :mod:`filelock` library): the kernel releases it when the holding
process exits for any reason, killed included, so a lock is held only by a live process.  The
lock file itself is an empty file that stays behind after the run: removing it while another
process waits on it would let two processes hold "the" lock at once.  It is harmless; delete it
when no run uses the target.

A second process that asks for a held lock is refused at once with :class:`TargetBusyError`
(one line naming the file), or waits for it with ``wait=True``.  The lock is re-entrant in the
thread that holds it (a command that holds it calls writers that take it again) and exclusive
against other threads, as against other processes.

File integrity does not depend on the lock (:mod:`dmft.solvers.hdf5` writes atomically); the lock
keeps two runs from computing, checkpointing and resuming one target at once.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import filelock

__all__ = ["TargetBusyError", "lock_path", "hold", "is_held"]


class TargetBusyError(RuntimeError):
    """Another live process holds the lock of an output target."""


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of ``target``: ``.<name>.lock`` in the same directory."""
    target = Path(target)
    return target.parent / f".{target.name}.lock"


def _lock(target: str | os.PathLike) -> filelock.BaseFileLock:
    path = lock_path(Path(target).absolute())
    path.parent.mkdir(parents=True, exist_ok=True)
    # one lock object per path in this process (is_singleton), with a state per thread: re-entrant in
    # the thread that holds it, exclusive against other threads and processes
    return filelock.FileLock(path, is_singleton=True, thread_local=True)


@contextlib.contextmanager
def hold(target: str | os.PathLike, *, wait: bool = False, timeout: float | None = None) -> Iterator[Path]:
    """Hold the exclusive lock of ``target`` for the duration of the ``with`` block.

    ``wait=False``: raise :class:`TargetBusyError` at once if another process holds it.
    ``wait=True``: wait until it is free (at most ``timeout`` seconds when given, then
    :class:`TargetBusyError`).  Yields the lock file's path.
    """
    lock = _lock(target)
    limit = (-1 if timeout is None else float(timeout)) if wait else 0
    try:
        lock.acquire(timeout=limit)
    except filelock.Timeout:
        how = f"still held after {timeout:g} s" if wait and timeout is not None else "held"
        raise TargetBusyError(f"{target}: another run is writing this file (its lock {lock_path(target).name} is "
                              f"{how})") from None
    try:
        yield Path(lock.lock_file)
    finally:
        lock.release()


def is_held(target: str | os.PathLike) -> bool:
    """Whether another process holds the lock of ``target`` now (a probe: it takes and releases
    the lock when free, so it is a snapshot, not a reservation)."""
    try:
        with hold(target):
            return False
    except TargetBusyError:
        return True
