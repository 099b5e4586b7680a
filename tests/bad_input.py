"""What every bad-input test checks besides the message: no file that existed before was changed or lost."""

from __future__ import annotations

from pathlib import Path


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_untouched(root: Path, before: dict[str, bytes]) -> None:
    """Each file of ``before`` is still under ``root``, byte for byte (new files may appear)."""
    after = snapshot(root)
    for name, data in before.items():
        assert after.get(name) == data, f"{name} changed or vanished"


def one_error_line(result, status: int, *words: str) -> str:
    """The CliRunner ``result`` failed with ``status``, no traceback, and exactly one stderr line, an
    ``error:`` line holding every one of ``words``; that line."""
    assert result.exit_code == status, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for word in words:
        assert word in errors[0], (word, errors[0])
    return errors[0]
