"""The authorization code and state travel to the worker in the task body only: the
message headers the broker keeps (and task events, `celery inspect`) show them masked."""

from __future__ import annotations

import base64
import json
import uuid

from redis.asyncio import Redis

from tests.support import client_app
from tokenlife.settings import Settings
from tokenlife.web.connect import send_exchange


async def test_the_queued_exchange_hides_the_code_and_state_in_its_headers(
    settings: Settings, redis: Redis
) -> None:
    # A queue no worker reads: the message stays in the broker for us to look at.
    queue = f"{settings.key_prefix}-unread-{uuid.uuid4().hex[:8]}"
    celery = client_app(settings)
    celery.conf.task_default_queue = queue
    code, state = f"code-{uuid.uuid4().hex}", f"state-{uuid.uuid4().hex}"
    key = f"{settings.key_prefix}:celery:{queue}"
    try:
        send_exchange(celery, {"state": state, "code": code, "iss": "https://issuer"})
        (raw,) = await redis.lrange(key, 0, -1)
    finally:
        await redis.delete(key)
    message = json.loads(raw)
    headers = message["headers"]
    assert headers["task"] == "tokenlife.exchange_code"
    assert code not in json.dumps(headers) and state not in json.dumps(headers)
    assert "'code': '***'" in headers["kwargsrepr"] and "https://issuer" in headers["kwargsrepr"]
    # The worker still gets both (the body is the task's arguments).
    _, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert kwargs == {"state": state, "code": code, "iss": "https://issuer"}
