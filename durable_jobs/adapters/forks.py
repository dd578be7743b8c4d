"""The id of this process, known without a system call.

Adapters look at it on every call to notice a ``fork()``: a child must not use its
parent's connections, claims or token prefix. ``os.getpid()`` is a system call each
time, several per client call; this value is kept by ``os.register_at_fork``, which
runs in every child that Python forks (``os.fork``, ``multiprocessing``) and in those
of servers that fork through the C API (which runs the same hooks).
"""

from __future__ import annotations

import os


class _Process:
    pid = os.getpid()


def pid() -> int:
    """``os.getpid()``, as of the last fork."""
    return _Process.pid


def _forked() -> None:
    _Process.pid = os.getpid()


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_forked)
