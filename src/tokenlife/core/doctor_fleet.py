"""`tokenlife doctor`, the tokenlife side: the encryption keys against stored connections,
the integrations file, beat and the workers. Pure, like core/doctor.py (Redis, broker)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tokenlife.core.doctor import Check, Status
from tokenlife.core.preflight import Finding

KEY_FIX = (
    "Put the key that encrypted them back into TOKENLIFE_ENCRYPTION_KEYS, after the first "
    "(every listed key decrypts; the first encrypts), on every worker, API and CLI host. "
    "Don't replace it with a new key: a new key decrypts nothing stored."
)


@dataclass(frozen=True, slots=True)
class KeySample:
    """Stored connections read by SCAN, each classified by which key decrypts it."""

    examined: int
    current: int = 0  # every secret decrypts with the first key
    older: int = 0  # some secret needs a later key: `keys rotate` not run since
    undecryptable: int = 0  # some secret decrypts with no configured key
    examples: tuple[str, ...] = ()  # "integration/connection_id" of a few undecryptable
    complete: bool = True  # the whole keyspace was scanned, not only a bounded part
    error: str | None = None  # why the sample stopped early (Redis went away, timed out)


@dataclass(frozen=True, slots=True)
class KeyFacts:
    configured: int  # how many keys TOKENLIFE_ENCRYPTION_KEYS lists (all valid Fernet keys)
    sample: KeySample | None  # None when Redis could not be read
    # The `.tokenlife/dev.key` the keys came from, TOKENLIFE_ENCRYPTION_KEYS being unset
    # (settings.require_encryption_keys, as every other entry point finds it).
    development_key_file: str | None = None


def key_checks(facts: KeyFacts) -> list[Check]:
    sample = facts.sample
    if facts.configured == 0:
        return [_no_keys(facts)]
    present = Check("keys", "configured", Status.OK, f"{facts.configured} key(s) configured")
    if facts.development_key_file is not None:
        present = Check(
            "keys", "configured", Status.WARNING,
            "TOKENLIFE_ENCRYPTION_KEYS is not set; using the development key in "
            f"{facts.development_key_file}, as every tokenlife process started here does",
            "Fine for `make run`. For production set TOKENLIFE_ENCRYPTION_KEYS everywhere; "
            "keep this key in it (after the first) while connections it stored are kept.",
        )  # fmt: skip
    if sample is None:
        return [present, Check("keys", "sample", Status.UNKNOWN,
                               "stored connections could not be read (see Redis above)",
                               "Run `tokenlife doctor` again once Redis answers.")]  # fmt: skip
    return [present, _sample(sample)]


def _no_keys(facts: KeyFacts) -> Check:
    stored = facts.sample.examined if facts.sample is not None else None
    message = "TOKENLIFE_ENCRYPTION_KEYS is not set, and no usable development key was found"
    if stored:
        message += f", and {_connections(stored)} are stored, encrypted with some key"
        fix = "Set TOKENLIFE_ENCRYPTION_KEYS to the key they were stored with; a new key " \
              "can't decrypt them."  # fmt: skip
    elif stored == 0:
        fix = "Nothing is stored yet: make a key with `tokenlife keys generate`, keep it in " \
              "your secret store, and set TOKENLIFE_ENCRYPTION_KEYS to it everywhere."  # fmt: skip
    else:
        fix = "Set TOKENLIFE_ENCRYPTION_KEYS to the key your stored connections use."
    return Check("keys", "configured", Status.ERROR, message, fix)


def _sample(sample: KeySample) -> Check:
    scope = "all" if sample.complete else "a sample of"
    seen = f"{scope} {_connections(sample.examined)}"
    if sample.error is not None:
        seen += f" (stopped early: {sample.error})"
    if sample.undecryptable:
        examples = ", ".join(sample.examples)
        return Check(
            "keys", "sample", Status.ERROR,
            f"{sample.undecryptable} of {seen} can't be decrypted with any configured key "
            f"(e.g. {examples})",
            KEY_FIX,
        )  # fmt: skip
    if sample.examined == 0:
        return Check("keys", "sample", Status.OK, "no stored connection to decrypt yet")
    message = f"{seen} decrypt"
    if sample.older:
        message += (
            f"; {sample.older} still use an older key (`tokenlife keys rotate` re-encrypts "
            "them under the first; remove an older key only after `tokenlife keys status` "
            "says none uses it)"
        )
    return Check("keys", "sample", Status.OK, message)


def _connections(count: int) -> str:
    return f"{count} stored connection{'' if count == 1 else 's'}"


def integration_checks(
    findings: Sequence[Finding] | None, *, file: str | None, error: str | None = None
) -> list[Check]:
    """The preflight of `tokenlife integrations check`, one check per finding."""
    if file is None:
        return [Check(
            "integrations", "file", Status.WARNING,
            "TOKENLIFE_INTEGRATIONS_FILE is not set: no integration is configured",
            "Write an integrations file (docs/configuration.md) and point "
            "TOKENLIFE_INTEGRATIONS_FILE at it.",
        )]  # fmt: skip
    if findings is None:
        return [Check("integrations", "preflight", Status.UNKNOWN,
                      f"the preflight of {file} did not finish: {error}",
                      "Run `tokenlife integrations check` to see it through.")]  # fmt: skip
    if not findings:
        return [Check("integrations", "preflight", Status.OK, f"{file}: no finding")]
    return [
        Check(
            "integrations",
            f.code,
            Status.ERROR if f.severity == "error" else Status.WARNING,
            f"{f.integration}: {f.message}",
            f.fix,
        )
        for f in findings
    ]


def beat_is_late(age: float | None, interval_seconds: float) -> bool:
    """The rule of GET /readyz: beat and a worker are alive when a refresh_due tick ran
    within ten intervals, and never less than 30 s (a tick may wait behind a batch)."""
    return age is None or age > max(30.0, 10 * interval_seconds)


@dataclass(frozen=True, slots=True)
class LivenessFacts:
    interval_seconds: float  # TOKENLIFE_REFRESH_DUE_INTERVAL_SECONDS
    heartbeat_at: float | None  # when the last refresh_due tick ran; None: none lately
    heartbeat_read: bool  # False when Redis could not be read
    workers: tuple[str, ...] | None  # the names that answered a ping; None: not asked
    ping_error: str | None = None


def liveness_checks(facts: LivenessFacts, now: float) -> list[Check]:
    found = [_workers(facts)]
    age = None if facts.heartbeat_at is None else max(0.0, now - facts.heartbeat_at)
    if not facts.heartbeat_read:
        found.append(Check("beat", "tick", Status.UNKNOWN,
                           "the heartbeat could not be read (see Redis above)",
                           "Run `tokenlife doctor` again once Redis answers."))  # fmt: skip
    elif not beat_is_late(age, facts.interval_seconds):
        assert age is not None
        found.append(Check("beat", "tick", Status.OK, f"last refresh_due tick {age:.0f} s ago"))
    elif not facts.workers:
        # A tick is run by a worker: with none answering, beat can't be seen either way.
        found.append(Check("beat", "tick", Status.UNKNOWN,
                           "no refresh_due tick lately, and no worker to run one",
                           "Start a worker first (above); then run this again."))  # fmt: skip
    else:
        when = "in the last minute" if age is None else f"for {age:.0f} s"
        found.append(Check(
            "beat", "tick", Status.ERROR,
            f"no refresh_due tick {when} although a worker answers: beat is not running "
            "(nothing is refreshed, no alert is sent)",
            "Run exactly one beat: `tokenlife beat`, or one `tokenlife worker` with its "
            "embedded beat; with the same TOKENLIFE_BROKER_URL and TOKENLIFE_KEY_PREFIX.",
        ))  # fmt: skip
    return found


def _workers(facts: LivenessFacts) -> Check:
    if facts.workers is None:
        return Check("worker", "ping", Status.UNKNOWN,
                     f"no ping sent: {facts.ping_error or 'the broker is unreachable'}",
                     "Fix the broker (above); then run this again.")  # fmt: skip
    if not facts.workers:
        return Check(
            "worker", "ping", Status.ERROR,
            "no worker answered a ping" + (f" ({facts.ping_error})" if facts.ping_error else ""),
            "Start `tokenlife worker`, with the same TOKENLIFE_BROKER_URL and "
            "TOKENLIFE_KEY_PREFIX as here (the prefix names the queue).",
        )  # fmt: skip
    names = ", ".join(sorted(facts.workers))
    return Check("worker", "ping", Status.OK, f"{len(facts.workers)} worker(s) answer: {names}")
