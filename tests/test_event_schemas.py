"""docs/schemas/ against the docs and the code: every documented event type has a draft
2020-12 schema, and every event in this run's stream (this module's flows and whatever
tests ran before) validates against the schema of its type."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from dataclasses import replace
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import (
    Draft202012Validator,
    FormatChecker,
)
from redis.asyncio import Redis
from referencing import Registry, Resource

from tests.fakes.base import Reply
from tests.fakes.issuer import serve_issuer
from tests.support import (
    Fakes,
    WorkerHandle,
    connect,
    consent,
    event_types,
    exchange,
    make_due,
    run_refresh_tick,
    stream_events,
    wait_until,
)
from tokenlife.core import events
from tokenlife.core.provider_breaker import BreakerPolicy, breaker_scope
from tokenlife.library import Tokenlife
from tokenlife.runtime import Runtime, load_config
from tokenlife.services.provider_health import ProviderHealth, Tally
from tokenlife.settings import Settings

DOCS = Path(__file__).resolve().parents[1] / "docs"
SCHEMA_FILES = sorted((DOCS / "schemas").glob("*.schema.json"))
ENVELOPE = "envelope"
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
ID_PREFIX = "urn:tokenlife:event:v1:"


def schema_name(path: Path) -> str:
    return path.name.removesuffix(".schema.json")


@cache
def schemas() -> dict[str, dict[str, Any]]:
    """Every schema by name: the event type, or `envelope`."""
    return {schema_name(path): json.loads(path.read_text()) for path in SCHEMA_FILES}


def event_schemas() -> dict[str, dict[str, Any]]:
    return {name: schema for name, schema in schemas().items() if name != ENVELOPE}


def documented_types() -> list[str]:
    """The event types docs/events.md has a section for (`## \\`type\\``)."""
    return re.findall(r"^## `([a-z_]+(?:\.[a-z_]+)+)`$", (DOCS / "events.md").read_text(), re.M)


def code_types() -> set[str]:
    """The event type constants of tokenlife.core.events (dotted lowercase names)."""
    return {
        value
        for name, value in vars(events).items()
        if name.isupper() and isinstance(value, str) and re.fullmatch(r"[a-z_]+(\.[a-z_]+)+", value)
    }


def _is_date_time(value: object) -> bool:
    # jsonschema checks "date-time" only with rfc3339-validator installed; the schemas'
    # pattern pins the shape, this makes sure it is a real instant with a zone.
    return not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is not None


FORMATS = FormatChecker()
FORMATS.checks("date-time", raises=ValueError)(_is_date_time)


@cache
def registry() -> Registry[Any]:
    """The envelope refers to the event schemas by their $id."""
    resources = [(s["$id"], Resource.from_contents(s)) for s in schemas().values()]
    return Registry().with_resources(resources)


def validator(name: str) -> Any:
    return Draft202012Validator(schemas()[name], registry=registry(), format_checker=FORMATS)


def problems(kind: str, data: Any) -> list[str]:
    """What is wrong with one stream entry, one line each; empty when it validates."""
    event_id = data.get("event_id") if isinstance(data, dict) else None
    where = f"{kind} {event_id}"
    if kind not in event_schemas():
        return [f"{where}: no schema docs/schemas/{kind}.schema.json"]
    found = [
        f"{where}: {'/'.join(map(str, error.absolute_path)) or '(data)'}: {error.message}"
        for error in validator(kind).iter_errors(data)
    ]
    if not found:
        entry = {"type": kind, "data": data}
        found = [f"{where}: envelope: {e.message}" for e in validator(ENVELOPE).iter_errors(entry)]
    return found


# -- the schemas themselves --------------------------------------------------------------


def test_there_is_a_schema_directory_with_an_envelope() -> None:
    assert SCHEMA_FILES, f"no *.schema.json in {DOCS / 'schemas'}"
    assert ENVELOPE in schemas()


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=schema_name)
def test_each_schema_is_a_valid_draft_2020_12_schema(path: Path) -> None:
    schema = json.loads(path.read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == DRAFT_2020_12
    assert schema["$id"] == ID_PREFIX + schema_name(path)
    assert schema["title"] and schema["description"]


@pytest.mark.parametrize("name", sorted(event_schemas()))
def test_each_event_schema_requires_every_field_and_allows_no_other(name: str) -> None:
    # make_event writes every field of a type every time, null where there is no value.
    schema = event_schemas()[name]
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(schema["properties"])
    common = {"event_id", "occurred_at", "integration", "connection_id"}
    assert common <= set(schema["properties"])


def test_docs_schemas_and_code_name_the_same_event_types() -> None:
    documented = documented_types()
    assert len(documented) == len(set(documented)), documented
    assert set(documented) == set(event_schemas()), "docs/events.md vs docs/schemas/"
    assert set(documented) == code_types(), "docs/events.md vs tokenlife.core.events"
    envelope_types = schemas()[ENVELOPE]["properties"]["type"]["enum"]
    assert sorted(envelope_types) == sorted(documented), "envelope.schema.json's type enum"


def test_the_envelope_checks_data_against_the_schema_of_its_type() -> None:
    data = {
        "event_id": uuid.uuid4().hex,
        "occurred_at": "2026-11-29T04:34:30.048103Z",
        "integration": "*",
        "connection_id": None,
        "severity": "error",
        "code": "invalid_file",
        "message": "The file is not TOML.",
        "fix": "Fix the integrations file.",
        "source": None,
    }
    envelope = validator(ENVELOPE)
    assert envelope.is_valid({"type": events.CONFIGURATION, "data": data})
    assert not envelope.is_valid({"type": events.TOKEN_REFRESHED, "data": data})
    assert not envelope.is_valid({"type": "no.such_type", "data": data})
    # `tokenlife events tail --json` adds the entry id; nothing else may be added.
    assert envelope.is_valid({"type": events.CONFIGURATION, "data": data, "id": "1-0"})
    assert not envelope.is_valid({"type": events.CONFIGURATION, "data": data, "id": "x"})
    assert not envelope.is_valid({"type": events.CONFIGURATION, "data": data, "extra": 1})
    assert problems(events.CONFIGURATION, data) == []
    assert problems(events.CONFIGURATION, {**data, "undocumented": 1})
    assert problems(events.CONFIGURATION, {**data, "occurred_at": "2026-11-29 04:34:30"})
    assert problems(events.CONFIGURATION, {**data, "occurred_at": "2026-13-29T04:34:30Z"})
    assert problems("no.such_type", data) == [
        f"no.such_type {data['event_id']}: no schema docs/schemas/no.such_type.schema.json"
    ]


# -- every event the code emits ---------------------------------------------------------


def new_id() -> str:
    return "schema-" + uuid.uuid4().hex[:12]


async def seen(redis: Redis, settings: Settings, cid: str, kind: str) -> None:
    async def present() -> bool:
        return kind in await event_types(redis, settings, cid)

    await wait_until(present, timeout=30, what=f"{kind} for {cid}")


async def degraded_until_it_lapses(
    tl: Tokenlife, worker: WorkerHandle, redis: Redis, settings: Settings
) -> None:
    """connection.authorized and alert.refresh_token_missing (a 1 h token, no refresh
    token), alert.access_token_expiring at once, then alert.reauthorization_required from
    the expiry watch."""
    cid = new_id()
    summary = await connect(tl, worker, "generic", cid)
    assert summary["outcome"] == "refresh_token_missing", summary
    await run_refresh_tick(worker)  # both lead times have passed: due at once
    await seen(redis, settings, cid, events.ACCESS_TOKEN_EXPIRING)
    await make_due(redis, settings, "generic", cid, expires_at=repr(time.time() - 1))
    await run_refresh_tick(worker)
    await seen(redis, settings, cid, events.REAUTHORIZATION_REQUIRED)


async def lifetime_unknown(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid = new_id()
    callback = await consent(tl, "generic", cid)
    fakes.generic.script(callback["code"], Reply(expires_in="omit"))
    await exchange(worker, state=callback["state"], code=callback["code"])
    await seen(redis, settings, cid, events.LIFETIME_UNKNOWN)


async def access_denied(
    tl: Tokenlife, worker: WorkerHandle, redis: Redis, settings: Settings
) -> None:
    cid = new_id()
    callback = await consent(tl, "generic", cid, deny="1")
    await exchange(
        worker,
        state=callback["state"],
        error=callback["error"],
        error_description=callback["error_description"],
    )
    await seen(redis, settings, cid, events.EXCHANGE_FAILED)
    # The user's own refusal raises no alert; a refused scope (the configuration's doing)
    # brings alert.exchange_failed with it.
    cid = new_id()
    callback = await consent(tl, "generic", cid)
    await exchange(worker, state=callback["state"], error="invalid_scope",
                   error_description="The requested scope is invalid: calendar")  # fmt: skip
    await seen(redis, settings, cid, events.EXCHANGE_FAILED_ALERT)


async def failing_then_recovered(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    """alert.refresh_failing (the access token has lapsed), then token.refreshed and
    connection.recovered."""
    cid = new_id()
    callback = await consent(tl, "generic-offline", cid)
    summary = await exchange(worker, state=callback["state"], code=callback["code"])
    assert summary["refresh_token_received"], summary
    family = callback["code"]
    fakes.generic.script_refresh(family, Reply(status=503, body=b"down"))
    await make_due(redis, settings, "generic-offline", cid, expires_at=repr(time.time() - 60))
    await run_refresh_tick(worker)
    await seen(redis, settings, cid, events.REFRESH_FAILING)
    fakes.generic.script_refresh(family, Reply())
    await make_due(redis, settings, "generic-offline", cid)
    await run_refresh_tick(worker)
    await seen(redis, settings, cid, events.CONNECTION_RECOVERED)


async def refresh_refused(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    """alert.reauthorization_required from the refresh path, with the preset's diagnosis."""
    cid = new_id()
    callback = await consent(tl, "google", cid)
    await exchange(worker, state=callback["state"], code=callback["code"])
    refusal = b'{"error": "invalid_grant", "error_description": "Bad Request"}'
    fakes.google.script_refresh(callback["code"], Reply(status=400, body=refusal))
    await make_due(redis, settings, "google", cid)
    await run_refresh_tick(worker)
    await seen(redis, settings, cid, events.REAUTHORIZATION_REQUIRED)


async def deleted(tl: Tokenlife, worker: WorkerHandle, settings: Settings) -> None:
    """connection.deleted, as the API's DELETE does it (revoked at the fake Google)."""
    cid = new_id()
    callback = await consent(tl, "google", cid)
    await exchange(worker, state=callback["state"], code=callback["code"])
    runtime = await Runtime.open(await load_config(settings))
    try:
        await runtime.removal.delete("google", cid, time.time())
    finally:
        await runtime.close()


async def client_secret_expired_then_accepted(settings: Settings) -> None:
    """alert.client_secret_expiring (a date 5 days ahead), alert.client_secret_expired (a
    refusal naming AADSTS7000222) and client_secret.accepted, from the service the worker
    runs; about the integration, so the connection id is null."""
    runtime = await Runtime.open(await load_config(settings))
    try:
        now = time.time()
        google = runtime.config.integrations["google"]
        expiring = replace(google, client_secret_expires_at=now + 5 * 86400)
        assert await runtime.secrets.check_expiring([expiring], now) == ["google"]
        said = "AADSTS7000222: The provided client secret keys for app are expired."
        assert await runtime.secrets.refused(google, "invalid_client", said, now)
        assert await runtime.secrets.accepted(google, now + 1)
        # The date moved beyond the warnings: client_secret.accepted with the new date.
        renewed = replace(google, client_secret_expires_at=now + 90 * 86400)
        assert await runtime.secrets.check_expiring([renewed], now + 2) == []
    finally:
        await runtime.close()


async def provider_degraded_then_recovered(settings: Settings) -> None:
    """alert.provider_degraded and provider.recovered, from the service the worker runs: the
    batches' outcomes open the host's breaker and a probe's answer closes it."""
    runtime = await Runtime.open(await load_config(settings))
    try:
        now = time.time()
        # A host of its own: the session's worker counts google's refreshes at the fake's.
        host = f"schema-{uuid.uuid4().hex[:8]}.invalid"
        google = replace(runtime.config.integrations["google"], token_url=f"https://{host}/t")
        health = ProviderHealth(
            breakers=runtime.breakers, events_=runtime.events, integrations={"google": google},
            policy=BreakerPolicy(min_failures=3, probe_seconds=1, pause_seconds=1),
        )  # fmt: skip
        scope = breaker_scope(google.token_url)
        await health.observe({scope: Tally(failures=Counter(http_503=2, timeout=1))}, now)
        await health.observe({scope: Tally(probe_answered=1)}, now + 2)
        assert await runtime.breakers.open_scopes() == []
    finally:
        await runtime.close()


async def issuer_down_then_up(settings: Settings, fakes: Fakes, directory: Path) -> None:
    """alert.configuration `integration_unavailable`, then integration.available."""
    async with serve_issuer() as issuer:
        path = issuer.integrations_file(directory / "issuer.toml", fakes.generic.base_url,
                                        fakes.callback)  # fmt: skip
        configured = settings.model_copy(
            update={"integrations_file": path, "discovery_retry_seconds": 0.1}
        )
        runtime = await Runtime.open(await load_config(configured))
        try:
            issuer.up = True

            async def available() -> bool:
                return "oidc" in runtime.config.integrations

            await wait_until(available, timeout=10, what="the discovery retry")
        finally:
            await runtime.close()


async def test_every_event_in_the_stream_matches_the_schema_of_its_type(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings,
    tmp_path: Path,
) -> None:  # fmt: skip
    # alert.configuration comes from the worker's start-up preflight: the test
    # configuration has mistakes on purpose (tests/support.py).
    await degraded_until_it_lapses(tl, worker, redis, settings)
    await lifetime_unknown(tl, worker, fakes, redis, settings)
    await access_denied(tl, worker, redis, settings)
    await failing_then_recovered(tl, worker, fakes, redis, settings)
    await refresh_refused(tl, worker, fakes, redis, settings)
    await deleted(tl, worker, settings)
    await client_secret_expired_then_accepted(settings)
    await provider_degraded_then_recovered(settings)
    await issuer_down_then_up(settings, fakes, tmp_path)

    entries = await stream_events(redis, settings.key_prefix)
    failures = [line for kind, data in entries for line in problems(kind, data)]
    assert not failures, f"{len(failures)} problem(s) in {len(entries)} events:\n" + "\n".join(
        failures[:40]
    )
    missing = set(documented_types()) - {kind for kind, _ in entries}
    assert not missing, f"documented event types never emitted: {sorted(missing)}"
