"""All I/O: Redis, the provider's HTTP endpoints, the event stream."""
