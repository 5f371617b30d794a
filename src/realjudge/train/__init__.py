"""One training engine for every detector."""
