"""The Typer app."""

from egrc_lite.cli.app import app

__all__ = ["app"]
