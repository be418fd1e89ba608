"""The JSON error body every /api/ route answers with: `{error, message, ...}`."""

from __future__ import annotations

from typing import Any

from aiohttp import web


def problem(http_status: int, error: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": error, "message": message, **extra}, status=http_status)
