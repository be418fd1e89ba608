"""A browser for the example apps: its own cookie jar, redirects followed hop by hop as a
browser follows them, and at a fake provider's authorization endpoint a user who consents
at once (or, told so, denies): what a person clicks on a real consent page."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlencode, urljoin, urlsplit

import aiohttp

REDIRECTS = (301, 302, 303, 307, 308)


@dataclass
class Page:
    status: int
    url: str
    text: str
    headers: Mapping[str, str]
    hops: list[str] = field(default_factory=list)  # every URL requested on the way

    def json(self) -> object:
        return json.loads(self.text)


@dataclass
class Browser:
    session: aiohttp.ClientSession
    providers: tuple[str, ...]  # the fake providers' base URLs
    headers: dict[str, str] = field(default_factory=dict)

    async def get(self, url: str, *, at_provider: Mapping[str, str] | None = None) -> Page:
        return await self.request("GET", url, at_provider=at_provider)

    async def request(
        self,
        method: str,
        url: str,
        *,
        data: Mapping[str, str] | None = None,
        at_provider: Mapping[str, str] | None = None,
    ) -> Page:
        """Follow redirects to the end; `at_provider` is what the user does at the provider
        (login_hint=NAME, deny="1"), added to the authorization request as the fake reads it."""
        hops: list[str] = []
        for _ in range(10):
            if at_provider and self._at_provider(url):
                url += ("&" if urlsplit(url).query else "?") + urlencode(at_provider)
            hops.append(url)
            async with self.session.request(
                method, url, data=data, headers=self.headers, allow_redirects=False
            ) as response:
                text = await response.text()
                if response.status not in REDIRECTS:
                    return Page(response.status, url, text, dict(response.headers), hops)
                url = urljoin(url, response.headers["Location"])
            if response.status not in (307, 308):  # only these keep the method
                method, data = "GET", None
        raise AssertionError(f"more than 10 redirects: {hops}")

    def _at_provider(self, url: str) -> bool:
        return any(url.startswith(base + "/") for base in self.providers)


@asynccontextmanager
async def browser(*providers: str, **headers: str) -> AsyncIterator[Browser]:
    """A new browser (no cookies yet) that knows which hosts are providers."""
    jar = aiohttp.CookieJar(unsafe=True)  # keeps cookies for 127.0.0.1 too
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        yield Browser(session, providers, dict(headers))
