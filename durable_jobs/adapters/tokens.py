"""Fencing tokens: each claim's differs from every other claim's, in any process.

A random prefix per process and a counter: as unique as a fresh UUID per claim,
at a tenth of its cost, which a client call pays once per claim. A forked child
draws a prefix of its own on its first token.
"""

from __future__ import annotations

import itertools
import uuid

from .forks import pid


class _Prefix:
    text = ""
    pid = 0  # of the process that drew ``text``


_prefix = _Prefix()
_counter = itertools.count()


def new_token() -> str:
    if _prefix.pid != pid():
        # The text first: a thread that sees this pid finds its prefix too.
        _prefix.text, _prefix.pid = uuid.uuid4().hex, pid()
    return f"{_prefix.text}.{next(_counter)}"
