"""Every exception tokenlife raises, in one tree.

::

    TokenlifeError
    ├── ConfigurationError           settings or integrations file are wrong; fix and restart
    ├── UsageError                   the caller passed something invalid
    │   ├── UnknownIntegrationError
    │   ├── UnknownConnectionError
    │   │   └── CorruptRecordError   a stored connection record is half-written or unreadable
    │   ├── InvalidStateError        OAuth `state` unknown, expired or already used
    │   ├── NoRefreshTokenError      a refresh was asked of a connection without a refresh token
    │   ├── UnauthorizedError        the HTTP API refused the API key (missing or wrong)
    │   └── ForbiddenError           the API key may not use that integration
    ├── DecryptionError              no configured key decrypts a stored secret
    ├── ReauthorizationRequiredError the connection can't get a token until the user reconnects
    ├── DeliveryError                a notification target refused or could not be reached
    ├── EventsTrimmedError           events after a reader's position were trimmed unread
    ├── TransientError               retry it: the provider may answer next time
    │   ├── IntegrationUnavailableError  its discovery document could not be fetched yet
    │   ├── TransportError           connection refused or reset, DNS failure
    │   ├── EndpointTimeoutError
    │   ├── ServerError              HTTP 5xx
    │   ├── RateLimitedError         HTTP 429
    │   ├── TemporarilyUnavailableError  (also an OAuthError)
    │   ├── StorageUnavailableError  Redis (or the broker) could not be reached or refused the write
    │   ├── CodeNotTakenError        an exchange may send its code again on the retry
    │   └── ConnectionBusyError      a refresh held the connection's lock past the wait
    └── ProviderError                terminal: the provider said no, or said nonsense
        ├── InvalidResponseError     not JSON, no access_token, bad expires_in, too large
        ├── InvalidIdTokenError      an id_token that is not a JWT for this client and issuer
        ├── InvalidAccountResponseError  the account endpoint's answer names no account id
        └── OAuthError               RFC 6749 §5.2 / §4.1.2.1 error codes, one class each

Messages never contain token values: they name fields, statuses and sizes only.

An error `tokenlife.client` raised for an answer of the HTTP API carries that answer's
`api_status` (the HTTP status) and `api_error` (its `error` code, docs/api.md); both are
None on errors raised in process. Standard library only: `tokenlife.client` imports this.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenlife.models import EventPage


class TokenlifeError(Exception):
    """Root of every error raised by tokenlife."""

    api_status: int | None = None
    api_error: str | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # BaseException's own replays `args` into __init__, which for the classes whose
        # __init__ takes other arguments than the message fails on unpickling, or drops
        # what __init__ didn't set (api_status, retry_after). Made without __init__, with
        # `args` (the message) and every attribute as they were, each class unpickles
        # whole, in a Celery result or a multiprocessing pool alike.
        return (_rebuilt, (type(self), self.args), dict(self.__dict__))


class ConfigurationError(TokenlifeError):
    """Raised at start-up when a setting or the integrations file is invalid."""


class UsageError(TokenlifeError):
    """Raised when a caller passes an invalid argument."""


class UnknownIntegrationError(UsageError):
    """Raised when an integration name is not configured."""


class UnknownConnectionError(UsageError):
    """Raised when no token set is stored for an (integration, connection id)."""


class CorruptRecordError(UnknownConnectionError):
    """Raised when a stored connection record lacks required fields or holds bad values
    (a write interrupted half-way); the connection is treated as absent."""


class InvalidStateError(UsageError):
    """Raised when an OAuth `state` is unknown, expired or was already used."""


class NoRefreshTokenError(UsageError):
    """Raised when a refresh is asked of a connection that has no refresh token while its
    access token still works (until `expires_at`; then the user has to connect again)."""

    def __init__(
        self, integration: str, connection_id: str, reason: str, *, expires_at: datetime | None
    ) -> None:
        super().__init__(f"{integration}/{connection_id}: {reason}")
        self.integration = integration
        self.connection_id = connection_id
        self.reason = reason
        self.expires_at = expires_at


class UnauthorizedError(UsageError):
    """Raised when the HTTP API refuses the API key: missing, or not one of
    TOKENLIFE_API_KEYS (401)."""


class ForbiddenError(UsageError):
    """Raised when the API key is limited to other integrations than the one asked for (403)."""


class DecryptionError(TokenlifeError):
    """Raised when none of the configured encryption keys decrypts a stored secret."""


class ReauthorizationRequiredError(TokenlifeError):
    """Raised when a token is asked for a connection that needs the user to connect again;
    `diagnosis` holds the fixes the last alert named, when known. Raised by
    `tokenlife.client`, its message is the API's."""

    def __init__(
        self,
        integration: str,
        connection_id: str,
        reason: str,
        *,
        diagnosis: tuple[str, ...] = (),
        message: str | None = None,
    ) -> None:
        said = f"{integration}/{connection_id} needs re-authorization: {reason}"
        super().__init__(message or said)
        self.integration = integration
        self.connection_id = connection_id
        self.reason = reason
        self.diagnosis = diagnosis


class DeliveryError(TokenlifeError):
    """Raised when a notification target refuses a message or can't be reached."""


class EventsTrimmedError(TokenlifeError):
    """Raised by a client's `follow_events` when events after the position it was given
    were trimmed from the streams (TOKENLIFE_EVENTS_MAX_LENGTH) before they were read:
    `after` is that position, `page` (a `tokenlife.models.EventPage`) what was read from
    the oldest event kept; handle its events and go on from its `next_after`."""

    def __init__(self, after: str | None, page: EventPage) -> None:
        super().__init__(
            f"events after {after!r} were trimmed before they were read; "
            f"the oldest kept follow (resume after {page.next_after!r})"
        )
        self.after = after
        self.page = page


class TransientError(TokenlifeError):
    """Raised for failures worth retrying; `retry_after` is the server's hint in seconds."""

    error = "transient"
    retry_after: float | None = None


class IntegrationUnavailableError(TransientError):
    """Raised when an integration is configured but its OIDC discovery has not succeeded
    yet; a background retry makes it available. Raised by `tokenlife.client`, it holds the
    API's message as `reason` and `message`, and `last_tried_at` is None."""

    error = "integration_unavailable"

    def __init__(
        self,
        name: str,
        reason: str,
        last_tried_at: float | None,
        next_try_at: float,
        *,
        message: str | None = None,
    ) -> None:
        tried = "never" if last_tried_at is None else _utc(last_tried_at)
        super().__init__(
            message
            or f"integration {name!r} is unavailable: discovery failed ({reason}); last tried "
            f"{tried}, next try {_utc(next_try_at)}"
        )
        self.integration = name
        self.reason = reason
        self.last_tried_at = last_tried_at
        self.next_try_at = next_try_at


class TransportError(TransientError):
    """Raised when the provider (from `tokenlife.client`: the API) could not be reached
    (refused, reset, DNS)."""

    error = "unreachable"
    # False when the connection was never made, so the provider can't have seen the
    # request; a reset or a dropped answer leaves that unknown.
    request_sent = True


class EndpointTimeoutError(TransientError):
    """Raised when the provider (from `tokenlife.client`: the API) did not answer within
    the configured timeout."""

    error = "timeout"


class ServerError(TransientError):
    """Raised when the provider answered with HTTP 5xx."""

    error = "server_error"

    def __init__(self, status: int) -> None:
        super().__init__(f"provider answered HTTP {status}")
        self.status = status


class RateLimitedError(TransientError):
    """Raised when the provider answered HTTP 429."""

    error = "rate_limited"

    def __init__(self, retry_after: float | None) -> None:
        super().__init__("provider answered HTTP 429 (rate limited)")
        self.retry_after = retry_after


class StorageUnavailableError(TransientError):
    """Raised when Redis could not be reached (or was loading) after the retries allowed."""

    error = "storage_unavailable"


class CodeNotTakenError(TransientError):
    """Raised by an exchange whose code the provider can't have redeemed (never connected,
    or answered 429/5xx); the retry carries `unsent_at`, the sent mark it may ignore."""

    def __init__(self, cause: TransientError, unsent_at: float) -> None:
        super().__init__(str(cause))
        self.error = cause.error
        self.retry_after = cause.retry_after
        self.unsent_at = unsent_at


class ConnectionBusyError(TransientError):
    """Raised when a delete waited its bound for the connection's lock (a refresh holds
    it); nothing was changed, and the provider is not at fault."""

    error = "connection_busy"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderError(TokenlifeError):
    """Raised when the provider refused the request or answered unusably; do not retry."""


class InvalidResponseError(ProviderError):
    """Raised when a token endpoint response breaks RFC 6749 §5.1 (shape, types, size)."""

    error = "invalid_response"


class InvalidIdTokenError(ProviderError):
    """Raised when a token response's id_token is malformed or not for this client/issuer."""

    error = "invalid_id_token"


class InvalidAccountResponseError(ProviderError):
    """Raised when a provider's account endpoint (GitHub `GET /user`, ...) answers with
    something other than a JSON object holding the account id where the catalogue says."""

    error = "invalid_account_response"


class OAuthError(ProviderError):
    """Raised for an OAuth error code returned by the provider (RFC 6749 §5.2, §4.1.2.1)."""

    error = "oauth_error"

    def __init__(
        self, description: str | None = None, *, error: str | None = None, uri: str | None = None
    ) -> None:
        if error is not None:
            self.error = error
        self.description = description
        self.uri = uri
        super().__init__(f"{self.error}: {description}" if description else self.error)


class InvalidRequestError(OAuthError):
    """Raised for `invalid_request`: the request was malformed."""

    error = "invalid_request"


class InvalidClientError(OAuthError):
    """Raised for `invalid_client`: client authentication failed (wrong id or secret)."""

    error = "invalid_client"


class InvalidGrantError(OAuthError):
    """Raised for `invalid_grant`: the code or refresh token is invalid, expired or revoked."""

    error = "invalid_grant"


class UnauthorizedClientError(OAuthError):
    """Raised for `unauthorized_client`: the client may not use this grant type."""

    error = "unauthorized_client"


class UnsupportedGrantTypeError(OAuthError):
    """Raised for `unsupported_grant_type`."""

    error = "unsupported_grant_type"


class InvalidScopeError(OAuthError):
    """Raised for `invalid_scope`."""

    error = "invalid_scope"


class AccessDeniedError(OAuthError):
    """Raised for `access_denied`: the user or an admin declined on the consent screen."""

    error = "access_denied"


class TemporarilyUnavailableError(OAuthError, TransientError):
    """Raised for `temporarily_unavailable` and `server_error`: retry later."""

    error = "temporarily_unavailable"


OAUTH_ERRORS: dict[str, type[OAuthError]] = {
    cls.error: cls
    for cls in (
        InvalidRequestError,
        InvalidClientError,
        InvalidGrantError,
        UnauthorizedClientError,
        UnsupportedGrantTypeError,
        InvalidScopeError,
        AccessDeniedError,
        TemporarilyUnavailableError,
    )
}
OAUTH_ERRORS["server_error"] = TemporarilyUnavailableError


def oauth_error(error: str, description: str | None = None, uri: str | None = None) -> OAuthError:
    """Build the OAuthError subclass for an error code; unknown codes keep their code."""
    cls = OAUTH_ERRORS.get(error, OAuthError)
    return cls(description, error=error, uri=uri)


def _rebuilt(cls: type[TokenlifeError], args: tuple[object, ...]) -> TokenlifeError:
    """An error as it was pickled, made without its __init__ (TokenlifeError.__reduce__)."""
    return cls.__new__(cls, *args)


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
