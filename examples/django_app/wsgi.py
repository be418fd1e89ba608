"""The WSGI application (`gunicorn django_app.wsgi`, or `runserver`, which loads it too).

Opening tokenlife here, once the app is loaded, makes a wrong integrations file or an
unreachable Redis stop the server at start rather than fail the first user who connects.
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_app.settings")
application = get_wsgi_application()

from django_app.views import tokenlife  # noqa: E402  (after Django is set up)

tokenlife.open()
