"""Where alerts go: targets and routes from the settings and the integrations file.

TOKENLIFE_ALERT_URLS=slack://...,mailto://...   every alert, through Apprise
TOKENLIFE_ALERT_WEBHOOK_URLS=https://...         every alert, as signed JSON

[alerts]
default_targets = ["ops"]
[alerts.targets.ops]
url = "msteams://..."            # an Apprise URL, or
[alerts.targets.pager]
webhook = "https://..."          # a signed JSON webhook
secret_env = "PAGER_SECRET"
[[alerts.routes]]
types = ["alert.reauthorization_required"]   # any of types / severities / integrations
severities = ["critical"]
integrations = ["google-drive"]
targets = ["pager"]
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tokenlife.core.notifications import Route
from tokenlife.errors import ConfigurationError
from tokenlife.settings import Settings


@dataclass(frozen=True, slots=True)
class TargetSpec:
    name: str
    kind: str  # "apprise" or "webhook"
    url: str
    secret: str | None = None


@dataclass(frozen=True, slots=True)
class AlertConfig:
    targets: tuple[TargetSpec, ...]
    routes: tuple[Route, ...]
    default_targets: tuple[str, ...]


def load_alert_config(settings: Settings, environ: Mapping[str, str]) -> AlertConfig:
    targets = [TargetSpec(f"alert-url-{n}", "apprise", url)
               for n, url in enumerate(settings.alert_urls, 1)]  # fmt: skip
    targets += [TargetSpec(f"webhook-{n}", "webhook", url, settings.alert_webhook_secret)
                for n, url in enumerate(settings.alert_webhook_urls, 1)]  # fmt: skip
    default = [t.name for t in targets]
    routes: list[Route] = []
    section = _section(settings)
    for name, table in section.get("targets", {}).items():
        targets.append(_target(name, table, environ))
    names = {t.name for t in targets}
    for table in section.get("routes", []):
        routes.append(_route(table, names))
    for name in section.get("default_targets", []):
        if name not in names:
            raise ConfigurationError(f"[alerts] default_targets names unknown target {name!r}")
        default.append(name)
    return AlertConfig(tuple(targets), tuple(routes), tuple(dict.fromkeys(default)))


def _section(settings: Settings) -> dict[str, Any]:
    if settings.integrations_file is None:
        return {}
    try:
        document = tomllib.loads(settings.integrations_file.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"integrations file: {exc}") from None
    section = document.get("alerts", {})
    if not isinstance(section, dict):
        raise ConfigurationError("[alerts] must be a table")
    return section


def _target(name: str, table: Any, environ: Mapping[str, str]) -> TargetSpec:
    if not isinstance(table, dict) or ("url" in table) == ("webhook" in table):
        raise ConfigurationError(f"[alerts.targets.{name}] needs `url` (Apprise) or `webhook`")
    if "url" in table:
        return TargetSpec(name, "apprise", str(table["url"]))
    secret = environ.get(str(table.get("secret_env", "")))
    if not secret:
        raise ConfigurationError(
            f"[alerts.targets.{name}] a webhook needs secret_env naming a set variable"
        )
    return TargetSpec(name, "webhook", str(table["webhook"]), secret)


def _route(table: Any, names: set[str]) -> Route:
    if not isinstance(table, dict) or not table.get("targets"):
        raise ConfigurationError("every [[alerts.routes]] needs `targets`")
    unknown = set(table["targets"]) - names
    if unknown:
        raise ConfigurationError(f"[[alerts.routes]] names unknown targets {sorted(unknown)}")

    def choice(key: str) -> frozenset[str] | None:
        return frozenset(table[key]) if key in table else None

    return Route(tuple(table["targets"]), choice("types"), choice("severities"),
                 choice("integrations"))  # fmt: skip
