"""Counters of code exchanges and on-demand refreshes, in the `{prefix}:counters` hash
beside the scheduled refreshes' (adapters/fleet_metrics.py lists every field family):

    exchange:{provider}:{outcome}:{reason}   exchanges by how they ended; `reason` is the
                                             error of a failed one, empty otherwise
    on_demand:{provider}:{outcome}           refreshes a token request made (services/access)
    on_demand_latency:{provider}:...         their duration, the fields of latency_fields

Label values are bounded: an error code a provider (or a browser, in the callback's
`error` parameter) makes up is counted as `other`, so nobody outside can mint series.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from enum import StrEnum

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tokenlife.adapters.keys import Keys

log = logging.getLogger(__name__)

# Provider label of an exchange whose integration is not known (no valid state, or an
# integration no longer configured); services/engine.py labels such refreshes with it too.
UNKNOWN_PROVIDER = "unknown"
OTHER_REASON = "other"


class ExchangeOutcome(StrEnum):
    AUTHORIZED = "authorized"  # stored, refreshable or long-lived: status active
    REFRESH_TOKEN_MISSING = "refresh_token_missing"  # stored degraded: it will lapse
    LIFETIME_UNKNOWN = "lifetime_unknown"  # stored active, with its alert
    FAILED = "failed"  # `exchange.failed`: nothing stored (or the stored one left as it was)


# What an on-demand refresh can end in: services.refresh_outcomes.Outcome, whose values a
# test keeps equal to these (adapters don't import services).
ON_DEMAND_OUTCOMES = (
    "refreshed", "transient_failure", "reauthorization_required", "conflict", "save_failed",
)  # fmt: skip

# Why an exchange failed, as `exchange.failed` says it (`error`).
EXCHANGE_FAILURE_REASONS: tuple[str, ...] = (
    # tokenlife's own: the callback, the state, the integration, storage, the account.
    "invalid_state", "unknown_integration", "integration_unavailable", "issuer_mismatch",
    "storage_unavailable", "outcome_unknown", "subject_mismatch", "subject_unknown",
    "invalid_response", "invalid_id_token", "invalid_account_response",
    # The token request failed on its last attempt (errors.py).
    "unreachable", "timeout", "rate_limited", "transient",
    # RFC 6749 §4.1.2.1 (the authorization response) and §5.2 (the token response).
    "invalid_request", "unauthorized_client", "access_denied", "unsupported_response_type",
    "invalid_scope", "server_error", "temporarily_unavailable", "invalid_client",
    "invalid_grant", "unsupported_grant_type",
    # OpenID Connect Core 1.0 §3.1.2.6.
    "interaction_required", "login_required", "account_selection_required",
    "consent_required", "invalid_request_uri", "invalid_request_object",
    "request_not_supported", "request_uri_not_supported", "registration_not_supported",
    # Google's authorization errors (core/authorization_error_vendors.py).
    "redirect_uri_mismatch", "admin_policy_enforced", "org_internal", "disallowed_useragent",
    OTHER_REASON,
)  # fmt: skip
_KNOWN_REASONS = frozenset(EXCHANGE_FAILURE_REASONS)


def exchange_field(provider: str, outcome: ExchangeOutcome, error: str | None = None) -> str:
    """The counter of one exchange's end. Pure."""
    reason = ""
    if outcome is ExchangeOutcome.FAILED:
        reason = error if error in _KNOWN_REASONS else OTHER_REASON
    return f"exchange:{provider}:{outcome.value}:{reason}"


def exchange_series(providers: Iterable[str]) -> dict[tuple[str, str, str], int]:
    """Every (provider, outcome, reason) of the providers given, at 0. Pure."""
    series: dict[tuple[str, str, str], int] = {}
    for provider in providers:
        for outcome in ExchangeOutcome:
            reasons = EXCHANGE_FAILURE_REASONS if outcome is ExchangeOutcome.FAILED else ("",)
            for reason in reasons:
                series[(provider, outcome.value, reason)] = 0
    return series


def parse_outcome_counters(
    counters: Mapping[str, str],
) -> tuple[dict[tuple[str, str, str], int], dict[tuple[str, str], int], dict[str, dict[str, int]]]:
    """Exchanges by (provider, outcome, reason), on-demand refreshes by (provider,
    outcome), and the raw on-demand latency fields by provider. Pure."""
    exchanges: dict[tuple[str, str, str], int] = {}
    on_demand: dict[tuple[str, str], int] = {}
    latency: dict[str, dict[str, int]] = {}
    for name, value in counters.items():
        family, _, rest = name.partition(":")
        if family == "exchange":
            provider, _, labels = rest.partition(":")
            outcome, _, reason = labels.partition(":")
            exchanges[(provider, outcome, reason)] = int(value)
        elif family == "on_demand":
            provider, _, outcome = rest.rpartition(":")
            on_demand[(provider, outcome)] = int(value)
        elif family == "on_demand_latency":
            provider, _, part = rest.partition(":")
            latency.setdefault(provider, {})[part] = int(value)
    return exchanges, on_demand, latency


class Counters:
    """Adds to the running totals; best effort, since a figure must never change what
    it counts: an exchange or a refresh already ended when its count is written."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def add(self, totals: Mapping[str, int]) -> bool:
        """One round trip; False (and a warning) when Redis did not take it."""
        if not totals:
            return True
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for name, amount in totals.items():
                    pipe.hincrby(self._keys.counters, name, amount)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("counters not written (%s): %s", type(exc).__name__, sorted(totals))
            return False
        return True


def on_demand_fields(provider: str, outcome: str, latency: Counter[str]) -> Counter[str]:
    """One on-demand refresh: its outcome, and `latency` (fleet_metrics.latency_fields of
    its duration) moved under the on_demand_latency family. Pure."""
    fields: Counter[str] = Counter({f"on_demand:{provider}:{outcome}": 1})
    for name, amount in latency.items():
        fields[f"on_demand_{name}"] = amount
    return fields
