"""`tokenlife demo-provider`: a Google-like and a Microsoft-like authorization server on
127.0.0.1, quirks included, with a consent page a person clicks. The test suite's fake
providers are these same classes without the page."""
