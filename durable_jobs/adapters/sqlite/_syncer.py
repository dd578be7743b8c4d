"""One fsync of the WAL for many transactions: the group commit of durability.

With ``synchronous=FULL``, SQLite syncs the WAL inside every ``COMMIT``, and a
transaction is answered only after. ``NORMAL`` writes the same frames without that
sync (checkpoints still sync as they must). The writer commits at ``NORMAL`` and
syncs the WAL file itself before answering: the same guarantee as ``FULL``, but
the fsync runs off the event loop and covers every transaction committed before
it started, however many.

A committed transaction is visible to other connections a moment before it is on
disk. It is only answered once it is, and so is a claim that may have read it (the
writer's barrier): a power cut in between loses only writes nobody was told
about, and no handler ran on them. An fsync that fails leaves the page cache in
doubt, so every durable write after it fails too, until the store is reopened.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from ...errors import StorageError

_sync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)

Answer = Callable[[BaseException | None], None]


class Syncer:
    """Counts the transactions committed without a sync; makes them durable."""

    def __init__(self, wal_path: str) -> None:
        self._fd = os.open(wal_path, os.O_RDONLY)
        try:
            # The WAL may be new: its directory entry must reach the disk too.
            directory = os.open(os.path.dirname(wal_path) or ".", os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except BaseException:
            os.close(self._fd)
            raise
        self._cond = threading.Condition()
        self._committed = 0  # transactions counted so far
        self._synced = 0  # all of those up to this one are on disk
        self._failure: str | None = None
        self._waiting: list[tuple[int, Answer]] = []
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="durable-jobs-fsync", daemon=True)
        self._thread.start()

    def check(self) -> None:
        """Raise if an fsync has failed, or the store closed: nothing durable may be
        written any more."""
        if self._failure is not None:
            raise StorageError(self._failure)

    def committed(self) -> int:
        """Count a transaction just committed (in commit order: under the writer's
        gate), or a barrier: what another process committed unsynced. Returns the
        generation to wait for."""
        with self._cond:
            self._committed += 1
            return self._committed

    def idle(self) -> bool:
        """Whether no answer waits for an fsync. Read without the lock: a guess,
        good enough to decide whether to batch."""
        return not self._waiting

    def unsynced(self) -> int:
        """The generation to wait for before acting on what was read: 0 when every
        transaction counted is on disk."""
        with self._cond:
            return self._committed if self._committed > self._synced else 0

    def sync(self, generation: int) -> None:
        """Make ``generation`` durable on the caller's thread."""
        with self._cond:
            if self._synced >= generation:
                return
            target = self._committed
            self._fsync()  # under the lock: the syncer thread must not close the file
            self._synced = max(self._synced, target)

    def after_sync(self, generation: int, answer: Answer) -> None:
        """Call ``answer`` (from the sync thread) once ``generation`` is durable, with
        the error instead if the fsync failed."""
        with self._cond:
            if self._synced >= generation:
                error = None
            elif self._failure is not None:
                error = StorageError(self._failure)
            else:
                self._waiting.append((generation, answer))
                self._cond.notify()
                return
        answer(error)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout=10)

    def _fsync(self) -> None:
        self.check()
        try:
            _sync(self._fd)
        except OSError as exc:
            self._failure = (
                f"fsync of the SQLite WAL failed ({exc}); reopen the store once the disk is fixed"
            )
            raise StorageError(self._failure) from exc

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._waiting and not self._stopping:
                        self._cond.wait()
                    if not self._waiting:
                        return
                    target = self._committed
                error: StorageError | None = None
                try:
                    self._fsync()
                except StorageError as exc:
                    error = exc
                with self._cond:
                    if error is None:
                        self._synced = max(self._synced, target)
                    done = [a for g, a in self._waiting if g <= target or error is not None]
                    self._waiting = [w for w in self._waiting if w[0] > target and error is None]
                for answer in done:
                    answer(error)
        finally:
            with self._cond:
                self._failure = self._failure or "the store was closed"
                os.close(self._fd)
