"""Run the egrc-lite command line from a checkout: ``python cli.py --help``."""
from egrc_lite.cli import app

if __name__ == "__main__":
    app()
