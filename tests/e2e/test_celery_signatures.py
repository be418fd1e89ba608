"""tokenlife.celery_signatures from an app's own Celery project: the signatures go through
tokenlife's real worker, and a chain continues in the app's own worker process
(tests/fakes/app_celery.py) on tokenlife's broker."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery, Signature, chain, current_app, group
from redis.asyncio import Redis

from tests.app_worker import AppWorker, app_worker  # noqa: F401 (a fixture)
from tests.fakes.app_celery import summaries_key
from tests.support import Fakes, WorkerHandle, consent, worker_environment
from tokenlife import celery_signatures
from tokenlife.celery_signatures import ExchangeCode, broker_settings, client_app, exchange_code
from tokenlife.errors import UsageError
from tokenlife.library import Tokenlife
from tokenlife.settings import Settings


@pytest.fixture(scope="module")
def tokenlife_tasks(settings: Settings) -> Iterator[ExchangeCode]:
    """exchange_code sent through a client app of this run's settings."""
    app = client_app(settings)
    yield exchange_code.using(app)
    app.close()


async def get(result: Any, timeout: float = 60) -> Any:
    return await asyncio.to_thread(result.get, timeout=timeout)


async def callback_for(tl: Tokenlife, integration: str = "google") -> tuple[str, dict[str, str]]:
    cid = "user-" + uuid.uuid4().hex[:12]
    return cid, await consent(tl, integration, cid)


async def test_delay_runs_the_exchange_in_tokenlifes_worker_and_get_returns_the_summary(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, tokenlife_tasks: ExchangeCode
) -> None:
    cid, callback = await callback_for(tl)

    result = tokenlife_tasks.delay(state=callback["state"], code=callback["code"])
    summary = await get(result)

    assert summary["integration"] == "google"
    assert summary["connection_id"] == cid
    assert (summary["outcome"], summary["status"]) == ("refreshable", "active")
    assert summary["refresh_token_received"] is True
    assert summary["error"] is None
    assert set(summary) == set(celery_signatures.ExchangeSummary.__annotations__)
    assert f"tokenlife.exchange_code[{result.id}] received" in worker.log()
    assert (await tl.connection("google", cid)).status == "active"


async def test_s_and_apply_async_send_the_same_task_and_a_second_send_returns_the_first_summary(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, tokenlife_tasks: ExchangeCode
) -> None:
    cid, callback = await callback_for(tl, "microsoft")
    kwargs = {"state": callback["state"], "code": callback["code"]}

    first = await get(tokenlife_tasks.s(**kwargs).apply_async())
    # Celery's own shape: apply_async(args, kwargs, **options)
    again = await get(tokenlife_tasks.apply_async((), kwargs, countdown=0))

    assert first["connection_id"] == cid
    assert again == first
    sent = [r for r in fakes.microsoft.token_requests if r.get("code") == callback["code"]]
    assert len(sent) == 1


async def test_an_error_callback_ends_in_a_failed_summary(
    tl: Tokenlife, worker: WorkerHandle, tokenlife_tasks: ExchangeCode
) -> None:
    cid, callback = await callback_for(tl)

    summary = await get(tokenlife_tasks.delay(
        state=callback["state"], error="access_denied", error_description="The user said no."
    ))  # fmt: skip

    assert (summary["connection_id"], summary["outcome"]) == (cid, "failed")
    assert summary["error"] == "access_denied"
    assert summary["diagnosis"] and summary["fixes"]


async def test_a_chain_continues_with_the_apps_own_task_in_the_apps_worker(
    tl: Tokenlife,
    worker: WorkerHandle,
    app_worker: AppWorker,  # noqa: F811
    tokenlife_tasks: ExchangeCode,
    redis: Redis,
    settings: Settings,
) -> None:
    cid, callback = await callback_for(tl)
    # The app's task by name: this process has no TOKENLIFE_* environment for the app's
    # module to configure itself from (its worker has).
    record_summary = app_worker.client.signature("test_app.record_summary")

    flow = chain(
        tokenlife_tasks.s(state=callback["state"], code=callback["code"]),
        record_summary.set(queue=app_worker.queue),
    )
    result = flow.apply_async()

    assert await get(result) == f"google/{cid}: refreshable"
    recorded = [
        json.loads(x) for x in await redis.lrange(summaries_key(settings.key_prefix), 0, -1)
    ]
    mine = [s for s in recorded if s["connection_id"] == cid]
    assert [(s["outcome"], s["status"]) for s in mine] == [("refreshable", "active")]
    assert await get(result.parent) == mine[0]
    assert "test_app.record_summary" in app_worker.log()
    assert "test_app.record_summary" not in worker.log()


async def test_the_apps_worker_never_imports_tokenlifes_worker(
    app_worker: AppWorker,  # noqa: F811
) -> None:
    watched = ["tokenlife.worker", "tokenlife.tasks", "tokenlife.celery_signatures"]
    result = app_worker.client.send_task("test_app.loaded", args=(watched,), queue=app_worker.queue)

    assert await get(result) == ["tokenlife.celery_signatures"]


async def test_an_app_whose_own_celery_uses_another_broker_still_reaches_tokenlife(
    tl: Tokenlife, worker: WorkerHandle, settings: Settings, tokenlife_tasks: ExchangeCode
) -> None:
    # The app's own Celery app is the current one, on a broker no worker serves: the
    # signature goes through tokenlife's client app all the same.
    previous = current_app._get_current_object()
    own = Celery("the-app", set_as_current=True)
    own.conf.update(broker_url="memory://", task_default_queue="the-app")
    try:
        cid, callback = await callback_for(tl)
        signature = tokenlife_tasks.s(state=callback["state"], code=callback["code"])
        summary = await get(signature.delay())
    finally:
        own.close()
        previous.set_current()

    assert summary["connection_id"] == cid
    assert summary["outcome"] == "refreshable"


async def test_exchange_code_without_arguments_comes_from_the_environment(
    tl: Tokenlife, worker: WorkerHandle, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in worker_environment(settings).items():
        if name.startswith("TOKENLIFE_"):
            monkeypatch.setenv(name, value)
    celery_signatures._default_app.cache_clear()
    try:
        cid, callback = await callback_for(tl)
        summary = await get(exchange_code.delay(state=callback["state"], code=callback["code"]))
        assert exchange_code.queue == settings.key_prefix
    finally:
        celery_signatures._default_app().close()
        celery_signatures._default_app.cache_clear()

    assert summary["connection_id"] == cid


def test_the_message_names_tokenlifes_queue_and_masks_the_code_and_state(
    settings: Settings, tokenlife_tasks: ExchangeCode
) -> None:
    signature = tokenlife_tasks.s(state="the-state", code="the-code", iss="https://issuer")

    assert signature.task == "tokenlife.exchange_code"
    assert signature.kwargs == {"state": "the-state", "code": "the-code", "iss": "https://issuer"}
    assert signature.options["queue"] == settings.key_prefix
    assert signature.options["serializer"] == "json"
    shown = signature.options["kwargsrepr"]
    assert "the-code" not in shown and "the-state" not in shown
    assert "https://issuer" in shown
    assert tokenlife_tasks.si(state="s", code="c").immutable


def test_the_repr_of_a_signature_a_chain_and_a_group_masks_the_code_and_state(
    tokenlife_tasks: ExchangeCode,
) -> None:
    signature = tokenlife_tasks.s(state="the-state", code="the-code", iss="https://issuer")
    other = tokenlife_tasks.app.signature("myapp.record")
    masked = "tokenlife.exchange_code(state='***', code='***', iss='https://issuer')"
    shown = {
        "signature": repr(signature),
        "str": str(signature),
        "immutable": repr(tokenlife_tasks.si(state="the-state", code="the-code")),
        "clone": repr(signature.clone()),
        "chain": repr(chain(signature, other)),
        "longer chain": repr(chain(other, signature, other.clone())),
        "or": repr(other | signature | other),
        "chain's clone": repr(chain(signature, other).clone()),
        "group": repr(group(signature)),
        "group of two": repr(group([signature, signature.clone()])),
        "chord": repr(group([signature]) | other),
    }

    leaked = {name: text for name, text in shown.items() if "the-" in text}
    assert not leaked
    assert shown["signature"] == masked
    assert "myapp.record()" in shown["chain"]


def test_a_signature_travels_as_a_plain_celery_signature(tokenlife_tasks: ExchangeCode) -> None:
    signature = tokenlife_tasks.s(state="the-state", code="the-code")
    plain = tokenlife_tasks.app.signature(
        "tokenlife.exchange_code", kwargs=signature.kwargs, **signature.options
    )

    # As a message carries it (JSON), and as Celery rebuilds it there.
    assert json.loads(json.dumps(signature)) == json.loads(json.dumps(plain))
    rebuilt = Signature.from_dict(json.loads(json.dumps(signature)))
    assert type(rebuilt) is Signature
    assert (rebuilt.task, rebuilt.kwargs, rebuilt.options) == (
        plain.task, plain.kwargs, plain.options,
    )  # fmt: skip
    unpickled = pickle.loads(pickle.dumps(signature))
    assert type(unpickled) is Signature
    assert unpickled == plain
    # In a chain too.
    flow = chain(tokenlife_tasks.app.signature("myapp.first"), signature)
    assert json.loads(json.dumps(flow))["kwargs"]["tasks"][1] == json.loads(json.dumps(plain))


def test_apply_async_takes_no_positional_task_arguments(tokenlife_tasks: ExchangeCode) -> None:
    with pytest.raises(UsageError, match="keyword arguments only"):
        tokenlife_tasks.apply_async(("the-state", "the-code"))


def test_a_forked_child_builds_its_own_default_app(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in worker_environment(settings).items():
        if name.startswith("TOKENLIFE_"):
            monkeypatch.setenv(name, value)
    celery_signatures._default_app.cache_clear()
    parents = celery_signatures._default_app()
    read, write = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:  # the child: answer through the pipe, never return into pytest
            try:
                childs = celery_signatures._default_app()
                answer = f"{childs is parents} {childs.conf.task_default_queue}"
                os.write(write, answer.encode())
            finally:
                os._exit(0)
        os.close(write)
        answer = os.read(read, 1024).decode()
        os.waitpid(pid, 0)
        assert answer == f"False {settings.key_prefix}"
        assert celery_signatures._default_app() is parents  # the parent keeps its own
    finally:
        os.close(read)
        parents.close()
        celery_signatures._default_app.cache_clear()


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"state": "s"}, "exactly one of code and error"),
        ({"state": "s", "code": "c", "error": "access_denied"}, "exactly one of code and error"),
        ({"state": "", "code": "c"}, "state must be a non-empty string"),
    ],
)
def test_a_call_that_cannot_work_is_refused_before_anything_is_sent(
    tokenlife_tasks: ExchangeCode, kwargs: dict[str, str], problem: str
) -> None:
    with pytest.raises(UsageError, match=problem):
        tokenlife_tasks.s(**kwargs)


def test_broker_settings_say_where_messages_go_and_nothing_about_the_apps_own_tasks(
    settings: Settings,
) -> None:
    config = broker_settings(settings)

    assert config["broker_url"] == settings.effective_broker_url
    assert config["result_backend"] == settings.result_backend_url
    namespace = f"{settings.key_prefix}:celery:"
    assert config["broker_transport_options"]["global_keyprefix"] == namespace
    assert config["result_backend_transport_options"]["global_keyprefix"] == namespace
    apps_own = ("task_default_queue", "task_acks_late", "beat_schedule",
                "worker_prefetch_multiplier", "task_serializer", "accept_content")  # fmt: skip
    assert not set(apps_own) & set(config)


def test_importing_the_signatures_starts_nothing_of_tokenlifes_worker() -> None:
    code = ("import sys, tokenlife.celery_signatures; "
            "print([m for m in ('tokenlife.worker', 'tokenlife.tasks') "
            "if m in sys.modules])")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.strip() == "[]"
