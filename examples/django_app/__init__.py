"""A Django app that connects a user's account with tokenlife in its own process."""
