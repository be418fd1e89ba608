"""One aiohttp app for `tokenlife demo-provider`: the Google-like provider under /google,
the Microsoft-like one under /microsoft, each with a documented client, and the
integrations file that points tokenlife at them."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from tokenlife.demo.google import DemoGoogle
from tokenlife.demo.microsoft import DemoMicrosoft

# Published on purpose: these clients exist only in a demo provider on your machine.
GOOGLE_CLIENT = ("demo-google-client", "demo-google-secret")
MICROSOFT_CLIENT = ("demo-microsoft-client", "demo-microsoft-secret")
GOOGLE_SCOPES = '["openid", "email", "https://www.googleapis.com/auth/drive.readonly"]'
MICROSOFT_SCOPES = '["openid", "email", "https://graph.microsoft.com/Mail.Read"]'


@dataclass(frozen=True, slots=True)
class DemoSite:
    """Where the demo listens (`base_url`) and where tokenlife's API is (`api_url`)."""

    base_url: str
    api_url: str

    @property
    def callback(self) -> str:
        return self.api_url.rstrip("/") + "/oauth/callback"

    def app(self) -> web.Application:
        google = DemoGoogle(consent_page=True)
        microsoft = DemoMicrosoft(consent_page=True)
        google.register(*GOOGLE_CLIENT, self.callback)
        microsoft.register(*MICROSOFT_CLIENT, self.callback)
        google.base_url = self.base_url + "/google"
        microsoft.base_url = self.base_url + "/microsoft"
        root = web.Application()
        root.router.add_get("/", self.index)
        root.add_subapp("/google", google.app())
        root.add_subapp("/microsoft", microsoft.app())
        return root

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(text=self.banner())

    def banner(self) -> str:
        g, m = GOOGLE_CLIENT, MICROSOFT_CLIENT
        return (
            "tokenlife demo provider: two authorization servers for trying tokenlife out\n"
            f"  Google-like     {self.base_url}/google     client_id {g[0]}  "
            f"client_secret {g[1]}\n"
            f"  Microsoft-like  {self.base_url}/microsoft  client_id {m[0]}  "
            f"client_secret {m[1]}\n"
            f"  redirect URI    {self.callback} (the only one they accept)\n"
            "Access tokens last an hour. Google-like issues a refresh token only with "
            "access_type=offline\n(and prompt=consent after a first consent); Microsoft-like "
            "only with the offline_access scope.\n"
            "An integrations file for these: tokenlife demo-provider --print-integrations\n"
        )

    def integrations_toml(self) -> str:
        """The walkthrough's file: demo-microsoft right, demo-google with one mistake."""
        g, m = GOOGLE_CLIENT, MICROSOFT_CLIENT
        return f"""# Integrations for `tokenlife demo-provider` (README: Five-minute walkthrough).

[integrations.demo-google]
# The mistake the walkthrough makes on purpose: this is a Google integration declared as
# "custom", so tokenlife does not send access_type=offline and no refresh token comes.
provider = "custom"
authorize_url = "{self.base_url}/google/o/oauth2/v2/auth"
token_url = "{self.base_url}/google/token"
revocation_url = "{self.base_url}/google/revoke"
client_id = "{g[0]}"
client_secret = "{g[1]}"
redirect_uri = "{self.callback}"
scopes = {GOOGLE_SCOPES}

[integrations.demo-microsoft]
provider = "microsoft"
tenant = "common"
authorize_url = "{self.base_url}/microsoft/{{tenant}}/oauth2/v2.0/authorize"
token_url = "{self.base_url}/microsoft/{{tenant}}/oauth2/v2.0/token"
client_id = "{m[0]}"
client_secret = "{m[1]}"
redirect_uri = "{self.callback}"
scopes = {MICROSOFT_SCOPES}
"""
