"""What redaction takes out of a log line, and what it leaves; beat's tick bookkeeping."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tokenlife import logs
from tokenlife.beat_quiet import is_tick_record, tally_period, tick_summary
from tokenlife.log_redaction import REDACTED, redact_event, redact_text

R = REDACTED


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # URLs: the callback's query, a token in a query, a form body
        ("GET /oauth/callback?code=abc123&state=st-999 200",
         f"GET /oauth/callback?code={R}&state={R} 200"),
        ("https://api.example/x?access_token=at-1&b=2", f"https://api.example/x?access_token={R}&b=2"),
        ("grant_type=refresh_token&refresh_token=rt-1&client_secret=s3",
         f"grant_type=refresh_token&refresh_token={R}&client_secret={R}"),
        ("id_token=eyJ.a.b;", f"id_token={R};"),
        # JSON bodies and Python reprs (Celery logs a task's kwargs repr)
        ('{"access_token": "at-1", "token_type": "Bearer"}',
         f'{{"access_token": "{R}", "token_type": "Bearer"}}'),
        ("{'state': 'st-1', 'code': 'c-1', 'iss': None}",
         f"{{'state': '{R}', 'code': '{R}', 'iss': None}}"),
        ('{"error_description": "bad \\"x\\"", "refresh_token": "rt-\\"q"}',
         f'{{"error_description": "bad \\"x\\"", "refresh_token": "{R}"}}'),
        # credentials in headers
        ("Authorization: Bearer abc.def.ghi", f"Authorization: {R}"),
        ("{'Authorization': 'Basic dXNlcjpwYXNz'}", f"{{'Authorization': '{R}'}}"),
        ("sent Bearer abcdefgh to the API", f"sent Bearer {R} to the API"),
        ("Proxy-Authorization: Basic dXNlcjpwYXNz", f"Proxy-Authorization: {R}"),
        # the name assigned a credential: the credential goes, not only its scheme
        ("authorization=Bearer ya29.abcdefgh", f"authorization={R} {R}"),
        # passwords in URLs: Redis, TLS Redis, RabbitMQ; a URL without one is left alone
        ("redis://:hunter2pw@redis:6379/0", f"redis://:{R}@redis:6379/0"),
        ("rediss://tokenlife:p%40ss@cache.example:6380/0", f"rediss://tokenlife:{R}@cache.example:6380/0"),
        ("amqp://guest:guest@127.0.0.1:5672//", f"amqp://guest:{R}@127.0.0.1:5672//"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        # keyword arguments in a repr
        ("Call(client_secret='s3cr3t-value', code=\"c-1 2\")",
         f"Call(client_secret='{R}', code=\"{R}\")"),
        ("connection g/u1 needs re-authorization: invalid_grant",
         "connection g/u1 needs re-authorization: invalid_grant"),
        # Fernet tokens (what the store writes) never show either
        ("blob gAAAAABlZ2V0dGluZ3NvbWV0aGluZ2xvbmc=", f"blob {R}"),
        # prose stays prose
        ("refresh of google/u1 failed (invalid_grant, attempt 2)",
         "refresh of google/u1 failed (invalid_grant, attempt 2)"),
        ("basic checks passed; the token endpoint answered HTTP 400",
         "basic checks passed; the token endpoint answered HTTP 400"),
        ("connection_id=u1 status_code=400", "connection_id=u1 status_code=400"),
    ],
)  # fmt: skip
def test_redact_text_by_shape(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    ("text", "known", "expected"),
    [
        # a provider's error body that echoes the token in prose
        ("refresh token rt-0123456789 is invalid", ["rt-0123456789"],
         f"refresh token {R} is invalid"),
        # the longer value first, so a prefix of it doesn't leave the rest behind
        ("a at-0123456789-more", ["at-0123456789", "at-0123456789-more"], f"a {R}"),
        # too short to search for: it would redact half of every line
        ("status ok", ["ok"], "status ok"),
        ("nothing", [], "nothing"),
    ],
)  # fmt: skip
def test_redact_text_known_values(text: str, known: list[str], expected: str) -> None:
    assert redact_text(text, known) == expected


def test_redact_event_fields_by_name_and_value() -> None:
    record = object()
    event: dict[str, Any] = {
        "event": "exchange https://x/cb?code=c-1",
        "access_token": "at-1",
        "Authorization": "Bearer at-1",
        "client_secret": None,  # nothing to hide: stays None
        "data": {"kwargs": {"state": "s-1", "connection_id": "u1"}, "args": ["rt-0123456789"]},
        "exception": "Traceback ...\nClientResponseError: 400, url='https://t/token?refresh_token=rt-2'",
        "count": 3,
        "_record": record,
    }
    out = redact_event(event, ["rt-0123456789"])
    assert out == {
        "event": f"exchange https://x/cb?code={R}",
        "access_token": R,
        "Authorization": R,
        "client_secret": None,
        "data": {"kwargs": {"state": R, "connection_id": "u1"}, "args": [R]},
        "exception": f"Traceback ...\nClientResponseError: 400, url='https://t/token?refresh_token={R}'",
        "count": 3,
        "_record": record,  # structlog's own, passed through untouched
    }


INFO, DEBUG = logging.INFO, logging.DEBUG


@pytest.mark.parametrize(
    ("name", "level", "args", "tick"),
    [
        ("celery.beat", INFO, ("tokenlife.refresh_due", "tokenlife.refresh_due"), True),
        ("celery.beat", INFO, ("tokenlife.deliver_alerts", "tokenlife.deliver_alerts"), True),
        ("celery.worker.strategy", INFO, {"name": "tokenlife.refresh_due", "id": "1"}, True),
        ("celery.app.trace", INFO, {"name": "tokenlife.deliver_alerts", "id": "1"}, True),
        # other tasks keep their lines
        ("celery.app.trace", INFO, {"name": "tokenlife.exchange_code", "id": "1"}, False),
        ("celery.app.trace", INFO, {"name": "tokenlife.refresh_batch", "id": "1"}, False),
        # a failed tick is an error, not noise
        ("celery.app.trace", logging.ERROR, {"name": "tokenlife.refresh_due"}, False),
        # other loggers never
        ("tokenlife.tasks", INFO, ("tokenlife.refresh_due",), False),
        ("celery.beat", INFO, None, False),
    ],
)  # fmt: skip
def test_is_tick_record(name: str, level: int, args: object, tick: bool) -> None:
    assert is_tick_record(name, level, args) is tick


@pytest.mark.parametrize(
    ("now", "period", "index"),
    [(0.0, 60, 0), (59.9, 60, 0), (60.0, 60, 1), (1_700_000_030.5, 60, 28_333_333),
     (7.5, 2.5, 3)],
)  # fmt: skip
def test_tally_period(now: float, period: float, index: int) -> None:
    assert tally_period(now, period) == index


def test_tick_summary_of_a_period_and_of_none() -> None:
    counts = {"ticks": "60", "claimed": "260", "batches": "4"}
    assert tick_summary(counts, 28_333_333, 60) == {
        "ticks": 60, "claimed": 260, "batches": 4, "seconds": 60,
        "period_start": "2023-11-14T22:13:00+00:00",
    }  # fmt: skip
    assert tick_summary({}, 28_333_333, 60) is None


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("invalid settings:\n  TOKENLIFE_A: bad\n  TOKENLIFE_B: worse",
         "invalid settings: TOKENLIFE_A: bad; TOKENLIFE_B: worse"),
        ("one line", "one line"),
        ("first\n\nsecond\n", "first; second"),
    ],
)  # fmt: skip
def test_one_line(text: str, line: str) -> None:
    assert logs.one_line(text) == line
