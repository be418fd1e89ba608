"""Bounded waits that poll Redis."""

from __future__ import annotations

import asyncio


def check_deadline(deadline: float) -> None:
    """TimeoutError once the loop's clock has passed `deadline`. A polling loop checks it
    besides running under asyncio.timeout: a redis-py command run under asyncio.wait_for
    (its socket timeout) can swallow that timeout's cancellation on Python 3.11 (CPython
    gh-86296), and the loop would poll on past its bound."""
    if asyncio.get_running_loop().time() >= deadline:
        raise TimeoutError
