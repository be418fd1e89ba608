"""`tokenlife doctor`: is this deployment well? Each problem with its fix."""

from __future__ import annotations

import json
import os
import sys
import time

import click

from tokenlife.cli import common
from tokenlife.core.doctor import Check, Status, exit_code
from tokenlife.errors import ConfigurationError
from tokenlife.services.doctor import Bounds, examine
from tokenlife.settings import load_settings

LABELS = {Status.OK: "ok", Status.WARNING: "WARNING", Status.ERROR: "ERROR",
          Status.UNKNOWN: "unknown"}  # fmt: skip


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {ok, checks: [...]}.")
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too, not only on errors.")
@click.option(
    "--timeout", type=click.FloatRange(0.1, 120), default=5.0, show_default=True,
    help="Seconds each check may take (Redis, broker, key sample); the integrations "
    "preflight gets TOKENLIFE_HTTP_TIMEOUT_SECONDS more.",
)  # fmt: skip
@click.option(
    "--sample", type=click.IntRange(0, 100_000), default=200, show_default=True,
    help="How many stored connections to decrypt at most.",
)  # fmt: skip
def doctor(as_json: bool, strict: bool, timeout: float, sample: int) -> None:
    """Check Redis (version, persistence, noeviction), the broker, the encryption keys
    against stored connections, the integrations file, beat and the workers.

    Prints every check and, for each problem, its fix. Exits 0 when nothing is wrong,
    1 on an error (or, with --strict, a warning); an `unknown` (a managed Redis that
    refuses CONFIG, say) never fails the run. See docs/doctor.md.
    """
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        # Nothing else can be checked without settings; say so in the same format.
        fix = "Correct the TOKENLIFE_* variables named above (environment or .env)."
        checks = [Check("settings", "valid", Status.ERROR, str(exc), fix)]
    else:
        bounds = Bounds(timeout=timeout, sample_size=sample, ping_seconds=min(1.0, timeout))
        checks = common.run(examine(settings, common.presets(), os.environ, time.time(), bounds))
    code = exit_code(checks, strict=strict)
    if as_json:
        click.echo(json.dumps({"ok": code == 0, "checks": [c.as_dict() for c in checks]},
                              indent=2))  # fmt: skip
    else:
        _print(checks)
    sys.exit(code)


def _print(checks: list[Check]) -> None:
    for check in checks:
        click.echo(f"{LABELS[check.status]:8} {check.area:13} {check.message}")
        if check.fix and check.status is not Status.OK:
            click.echo(f"{'':8} {'':13} fix: {check.fix}")
    counts = {s: sum(c.status is s for c in checks) for s in Status}
    click.echo(
        f"{len(checks)} check(s): {counts[Status.ERROR]} error(s), "
        f"{counts[Status.WARNING]} warning(s), {counts[Status.UNKNOWN]} unknown"
    )
