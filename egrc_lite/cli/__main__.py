"""``python -m egrc_lite.cli`` (e.g. under ``accelerate launch -m egrc_lite.cli ...``)."""

from egrc_lite.cli.app import app

if __name__ == "__main__":
    app()
