"""What the service tests share: a Runtime over the session's settings and fake providers,
opened on the test's loop and closed after it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support import Fakes
from tokenlife.runtime import Runtime, load_config
from tokenlife.settings import Settings


@pytest.fixture
async def runtime(settings: Settings, fakes: Fakes) -> AsyncIterator[Runtime]:
    opened = await Runtime.open(await load_config(settings))
    yield opened
    await opened.close()
