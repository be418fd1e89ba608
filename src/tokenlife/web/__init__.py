"""The HTTP service: an aiohttp app over the same services the worker uses."""
