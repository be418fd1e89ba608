"""How long and how often a write that ends a refresh is retried while Redis is away
(the loop itself is adapters/storage_errors.retry_while_unavailable, shared with the
exchange's save)."""

from __future__ import annotations

from dataclasses import dataclass

from tokenlife.adapters.storage_errors import SAVE_RETRY_GAP_SECONDS


@dataclass(frozen=True, slots=True)
class WriteRetry:
    """How long to keep trying a write, and how far apart."""

    seconds: float = 600.0
    base_seconds: float = 0.1
    max_delay_seconds: float = SAVE_RETRY_GAP_SECONDS
