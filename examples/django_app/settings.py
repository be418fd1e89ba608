"""The Django settings this example needs, and no more. tokenlife reads its own from the
TOKENLIFE_* environment (views.py); Django's secret comes from DJANGO_SECRET_KEY."""

from __future__ import annotations

import os

SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]  # signs the session cookie; never in code
DEBUG = False
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
ROOT_URLCONF = "django_app.urls"
WSGI_APPLICATION = "django_app.wsgi.application"
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}  # nothing here needs one
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# Sessions in a signed cookie, so the example runs without a database; any session
# backend does. The cookie stays SameSite=Lax (Django's default): the provider sends the
# browser back to the callback with a cross-site top-level GET, which Strict would strip
# of the session, and the callback could not match the flow to the browser.
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
SESSION_COOKIE_SAMESITE = "Lax"
USE_TZ = True
