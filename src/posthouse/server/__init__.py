"""The Posthouse server; `main` is the `posthouse` command's entry point."""

from __future__ import annotations

import sys


def main() -> None:
    """Run the CLI, or say how to install the server when only the SDK is installed."""
    try:
        from posthouse.server.cli import main as cli_main
    except ImportError as exc:
        sys.stderr.write(f"posthouse: error: the server is not installed ({exc.name} is missing); "
                         "install it with: pip install 'posthouse[server]'\n")
        raise SystemExit(2) from None
    cli_main()
