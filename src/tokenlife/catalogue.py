"""The catalogue as people and machines read it (`tokenlife providers list/show`)."""

from __future__ import annotations

from typing import Any

from tokenlife.core.presets import Preset


def preset_summary(preset: Preset) -> dict[str, Any]:
    return {
        "name": preset.name,
        "title": preset.title,
        "issues_refresh_tokens": preset.facts.get("issues_refresh_tokens"),
        "rotates_refresh_tokens": preset.facts.get("rotates_refresh_tokens"),
    }


def preset_details(preset: Preset) -> dict[str, Any]:
    return {
        "name": preset.name,
        "title": preset.title,
        "authorize_url": preset.authorize_url,
        "token_url": preset.token_url,
        "placeholders": dict(preset.placeholders),
        "token_endpoint_auth_method": preset.token_endpoint_auth_method,
        "pkce_sent_by_default": preset.pkce,
        "authorization_params": dict(preset.authorization_params),
        "offline_scopes": list(preset.offline_scopes),
        "refresh_token_idle_days": preset.refresh_token_idle_days,
        "refresh_token_requirements": [
            {
                "scope": r.scope,
                "param": r.param,
                "value": r.value,
                "strength": r.strength,
                "why": r.why,
                "source": r.source,
            }
            for r in preset.requires
        ],
        "facts": preset.facts.as_dict(),
        "reauthorization_causes": [
            {
                "error": r.error,
                "description_contains": r.description_contains,
                "cause": r.cause,
                "fix": r.fix,
                "source": r.source,
            }
            for r in preset.reauthorization
        ],
    }


def format_details(data: dict[str, Any]) -> str:
    lines = [f"{data['title']} ({data['name']})"]
    for key in ("authorize_url", "token_url", "token_endpoint_auth_method",
                "authorization_params", "offline_scopes", "refresh_token_idle_days"):  # fmt: skip
        lines.append(f"  {key:28} {data[key]}")
    facts = data["facts"]
    lines.append("  facts:")
    for key, value in facts.items():
        if key in ("sources", "quirks"):
            continue
        source = facts["sources"].get(key)
        shown = repr(value) if isinstance(value, str) and value.strip() != value else value
        lines.append(f"    {key:30} {shown}" + (f"\n{'':35}{source}" if source else ""))
    if data["refresh_token_requirements"]:
        lines.append("  a refresh token needs:")
        for req in data["refresh_token_requirements"]:
            what = req["scope"] or f"{req['param']}={req['value']}"
            lines.append(f"    {what} ({req['strength']}): {req['why']}\n      {req['source']}")
    if facts["quirks"]:
        lines.append("  quirks:")
        lines += [f"    - {q['text']}\n      {q['source']}" for q in facts["quirks"]]
    return "\n".join(lines)
