"""The Microsoft identity platform, quirks included: the demo provider's (tokenlife.demo)."""

from __future__ import annotations

from tokenlife.demo.microsoft import DemoMicrosoft as FakeMicrosoft

__all__ = ["FakeMicrosoft"]
