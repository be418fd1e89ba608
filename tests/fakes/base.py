"""What every fake provider shares: the demo provider's code (tokenlife.demo), which
`tokenlife demo-provider` serves to people and the tests serve to themselves.

A fake is a real aiohttp app served on 127.0.0.1. Tests read its state (codes issued,
tokens issued, requests seen) and script its misbehaviour per authorization code. Without
a consent page (the default) the user in `login_hint` consents at once.
"""

from __future__ import annotations

from tokenlife.demo.grants import Client, Family, Grant, Reply
from tokenlife.demo.grants import unsigned_jwt as _unsigned_jwt
from tokenlife.demo.provider import DemoProvider as FakeProvider

__all__ = ["Client", "FakeProvider", "Family", "Grant", "Reply", "_unsigned_jwt"]
