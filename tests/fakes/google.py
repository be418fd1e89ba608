"""Google's OAuth 2.0 endpoints, quirks included: the demo provider's (tokenlife.demo)."""

from __future__ import annotations

from tokenlife.demo.google import DemoGoogle as FakeGoogle

__all__ = ["FakeGoogle"]
