"""Fencing tokens stay unique across calls and across forked processes."""

from __future__ import annotations

import os
import sys

import pytest

from durable_jobs.adapters.tokens import new_token


def test_tokens_of_one_process_never_repeat() -> None:
    tokens = [new_token() for _ in range(10_000)]
    assert len(set(tokens)) == len(tokens)


@pytest.mark.skipif(sys.platform == "win32", reason="fork() is POSIX only")
def test_a_forked_child_draws_tokens_its_parent_never_does() -> None:
    # Both continue the same counter after fork(): without a prefix of its own the
    # child's next token would equal the parent's.
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next token and leave at once
        os.close(read)
        os.write(write, new_token().encode())
        os._exit(0)
    os.close(write)
    try:
        parent = new_token()
        with os.fdopen(read, "rb") as pipe:
            child = pipe.read().decode()
    finally:
        os.waitpid(pid, 0)
    assert child
    assert child != parent
    assert child.split(".")[0] != parent.split(".")[0]
