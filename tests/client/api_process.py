"""`tokenlife api` as a real process for the clients to call, configured like the test
run (its Redis, prefix, keys and integrations), so the sync client can block on it from
any thread or forked process."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.support import serving_api
from tokenlife.settings import Settings

FULL = "client-full-key-0123456789"
LIMITED = "client-generic-key-0123456789"  # limited to the integration `generic`
RETURN_TO = "https://app.example.com/"


@contextmanager
def running_api(
    settings: Settings, directory: Path, extra: Mapping[str, str] | None = None
) -> Iterator[str]:
    """The base URL of a `tokenlife api` answering /healthz, with the keys above; its log is
    in `directory`."""
    env = {"TOKENLIFE_API_RETURN_TO_ALLOWED": RETURN_TO, **(extra or {})}
    with serving_api(settings, directory, f"{FULL},{LIMITED}:generic", env) as (base, _):
        yield base
