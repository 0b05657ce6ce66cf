"""Posthouse: self-hosted transactional email. The SDK's public names live here; the server is `posthouse.server`."""

__version__ = "0.1.0"
__all__ = ["__version__"]
