"""The HTTP prediction service."""
