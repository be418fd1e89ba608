"""A token endpoint that answers every refresh at once, for benchmarks.

Stateless and as cheap as it gets, so the benchmark measures the client side. Run it as
its own process: `python -m bench.fake_token_endpoint PORT`.
"""

from __future__ import annotations

import json
import secrets
import sys

from aiohttp import web


async def token(request: web.Request) -> web.Response:
    form = await request.post()
    if form.get("grant_type") != "refresh_token" or not form.get("refresh_token"):
        return web.json_response({"error": "invalid_request"}, status=400)
    body = {
        "access_token": "at-" + secrets.token_urlsafe(24),
        "refresh_token": "rt-" + secrets.token_urlsafe(24),
        "token_type": "Bearer",
        "expires_in": 3600,
        "scope": "openid offline_access",
    }
    return web.Response(text=json.dumps(body), content_type="application/json")


def main() -> None:
    app = web.Application()
    app.router.add_post("/token", token)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
