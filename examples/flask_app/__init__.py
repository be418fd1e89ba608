"""A Flask app that connects accounts through tokenlife's HTTP API."""
