"""What a log line must never carry, and the structlog processor that takes it out.

Pure: no I/O, no clock. Two nets, because either alone misses something:

- by shape: secret-named fields of the event dict, `Authorization`/`Bearer` credentials,
  `code=`/`state=`/`access_token=`… in URLs and form bodies, and `"access_token": "…"` in
  JSON or Python reprs (an aiohttp exception carries the URL with its query string; Celery
  logs a task's kwargs repr, which for an exchange holds `code` and `state`);
- by value: the token or code being handled right now, registered by the code that holds
  it (tokenlife.logs.conceal), so a provider's error body that echoes it in free text
  ("refresh token rt-123 is invalid") is caught too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[redacted]"

# Parameter names of RFC 6749 (§4.1.2 code/state, §5.1 tokens, §2.3.1 client_secret),
# RFC 7636 (code_verifier), OIDC (id_token) and our own secrets (API keys, webhook secret).
SECRET_NAMES = frozenset(
    {
        "access_token", "refresh_token", "id_token", "code", "state", "code_verifier",
        "client_secret", "client_assertion", "assertion", "password", "secret", "token",
        "api_key", "api_keys", "authorization", "proxy-authorization", "cookie", "set-cookie",
        "session", "session_token", "encryption_keys", "alert_webhook_secret", "alert_urls",
        "subject_token", "actor_token", "device_code",
    }
)  # fmt: skip

_NAMES = "|".join(sorted((re.escape(n) for n in SECRET_NAMES), key=len, reverse=True))
# `name='value'` / `name="value"`: a keyword in a Python repr (a dataclass, a call).
_ASSIGNED_QUOTED = re.compile(rf"(?i)(?<![A-Za-z0-9_])({_NAMES})(=)(['\"])((?:\\.|(?!\3).)*)\3")
# `name=value` in a URL, form body or message; the value ends at a separator.
_ASSIGNED = re.compile(rf"(?i)(?<![A-Za-z0-9_])({_NAMES})(=)([^&\s'\"<>,;)\]}}]+)")
# `"name": "value"` (JSON) and `'name': 'value'` (a Python repr).
_QUOTED = re.compile(rf"(?i)(['\"])({_NAMES})\1(\s*:\s*)(['\"])((?:\\.|(?!\4).)*)\4")
# A header line `Authorization: <anything>`, then `Bearer x`/`Basic x` anywhere (RFC 6750
# §2.1, RFC 7617); case-sensitive on purpose: "basic checks" is prose, not a credential.
_HEADER = re.compile(r"(?i)(?<![\w-])((?:proxy-)?authorization)(\s*:\s*)([^\r\n'\"]+)")
_CREDENTIAL = re.compile(r"\b(Bearer|bearer|BEARER|Basic)(\s+)([A-Za-z0-9._~+/=-]{4,})")
# The password of a URL's userinfo (RFC 3986 §3.2.1): redis://:pw@, amqp://user:pw@.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)([^/\s@]+)(@)")
# A Fernet key or token: base64url, 44 characters for a key, `gAAAAA` for a token.
_FERNET = re.compile(r"\bgAAAAA[A-Za-z0-9_=-]{20,}")

# Known values shorter than this are not searched for in free text: "1" or "ok" would
# redact half of every line and protect nothing (real tokens and codes are long).
MIN_KNOWN_LENGTH = 8


def redact_text(text: str, known: Iterable[str] = ()) -> str:
    """`text` without secrets: the known values, then secrets recognised by their shape."""
    for value in sorted({v for v in known if len(v) >= MIN_KNOWN_LENGTH}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    # Credentials first: `authorization=Bearer x` must lose x, not only the word Bearer.
    text = _HEADER.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", text)
    text = _CREDENTIAL.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", text)
    text = _USERINFO.sub(lambda m: f"{m[1]}{REDACTED}{m[3]}", text)
    text = _ASSIGNED_QUOTED.sub(lambda m: f"{m[1]}{m[2]}{m[3]}{REDACTED}{m[3]}", text)
    text = _ASSIGNED.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", text)
    text = _QUOTED.sub(lambda m: f"{m[1]}{m[2]}{m[1]}{m[3]}{m[4]}{REDACTED}{m[4]}", text)
    return _FERNET.sub(REDACTED, text)


def redact_value(value: Any, known: Iterable[str] = ()) -> Any:
    """A field value with secrets taken out, recursing into mappings and sequences."""
    if isinstance(value, str):
        return redact_text(value, known)
    if isinstance(value, Mapping):
        return {
            k: REDACTED if _secret_name(k) else redact_value(v, known) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v, known) for v in value)
    if isinstance(value, bytes | bytearray):
        return redact_text(bytes(value).decode("utf-8", "replace"), known)
    if value is None or isinstance(value, bool | int | float):
        return value
    # An exception or any other object: its text is what a renderer would print.
    return redact_text(str(value), known)


def redact_event(event: Mapping[str, Any], known: Iterable[str] = ()) -> dict[str, Any]:
    """Every field of a structlog event dict, secret-named ones replaced whole."""
    known = tuple(known)
    return {
        key: REDACTED if _secret_name(key) and value is not None else redact_value(value, known)
        for key, value in event.items()
        if not key.startswith("_")  # _record, _from_structlog: structlog's own, not output
    } | {key: value for key, value in event.items() if key.startswith("_")}


def _secret_name(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace("-", "_") in _SECRET_KEYS


_SECRET_KEYS = frozenset(n.replace("-", "_") for n in SECRET_NAMES)
