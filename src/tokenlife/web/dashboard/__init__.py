"""The ops dashboard at /dashboard (docs/dashboard.md): server-rendered HTML behind the API
keys, with a login form, a session cookie and CSRF tokens.

Wiring, in create_app:

    setup_dashboard(app, runtime, app[KEYS], celery)
"""

from __future__ import annotations

from aiohttp import web
from celery import Celery

from tokenlife.adapters.connect_sessions import ConnectSessions
from tokenlife.adapters.dashboard_sessions import DashboardSessions
from tokenlife.runtime import Runtime
from tokenlife.services.dashboard import DashboardReader
from tokenlife.web.auth import ApiKey
from tokenlife.web.dashboard import routes
from tokenlife.web.dashboard.routes import DASHBOARD, Dashboard, logged_in

__all__ = ["setup_dashboard"]


def setup_dashboard(
    app: web.Application, runtime: Runtime, keys: list[ApiKey], celery: Celery
) -> None:
    settings = runtime.config.settings
    app[DASHBOARD] = Dashboard(
        runtime=runtime,
        keys=keys,
        celery=celery,
        sessions=DashboardSessions(runtime.redis, runtime.keys),
        reader=DashboardReader(
            runtime.redis, runtime.keys, runtime.tokens, runtime.config.integrations
        ),
        connect_sessions=ConnectSessions(
            runtime.redis, runtime.keys, settings.connect_session_ttl_seconds
        ),
    )
    add = app.router
    add.add_get("/dashboard", logged_in(routes.overview, changes_state=False))
    add.add_get("/dashboard/login", routes.login_form)
    add.add_post("/dashboard/login", routes.login)
    add.add_post("/dashboard/logout", logged_in(routes.logout, changes_state=True))
    add.add_post("/dashboard/refresh", logged_in(routes.refresh, changes_state=True))
    add.add_post("/dashboard/connect-link", logged_in(routes.reconnect_link, changes_state=True))
    add.add_get("/dashboard/static/{name}", routes.static)
