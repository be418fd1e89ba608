"""A FastAPI app that calls a provider API with fresh tokens from tokenlife in process."""
