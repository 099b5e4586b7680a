"""The base of every error that is the user's to fix (bad config, missing file, missing extra), and the
environment errors (no permission, disk full, read-only file system) that the CLI reports without a traceback.

The CLI prints a user error as one line and exits with status 2, an environment error as one line naming
the path and exits with status 1; anything else is a bug and keeps its traceback.
Library code raises a subclass of :class:`EgrcError` with a message that names the problem and the fix.

>>> import errno
>>> environment_error(OSError(errno.ENOSPC, "No space left on device", "runs/x/config.yaml"))
'cannot write runs/x/config.yaml: No space left on device (free some space or choose another --out)'
>>> environment_error(OSError(errno.ENOENT, "No such file or directory")) is None
True
>>> environment_error(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"), "runs/x")
'cannot write runs/x: torch could not finish writing a file, most likely a full disk (free some space or choose \
another --out)'
"""

from __future__ import annotations

import errno
import os


class EgrcError(Exception):
    """A user-facing error whose message is one line naming the problem and the fix."""


USER_ERRORS: tuple[type[BaseException], ...] = (EgrcError,)

ENVIRONMENT_ERRNOS: dict[int, tuple[str, str]] = {
    errno.EACCES: ("cannot access", "check its permissions or choose another --out"),
    errno.EPERM: ("cannot access", "check its permissions or choose another --out"),
    errno.ENOSPC: ("cannot write", "free some space or choose another --out"),
    errno.EROFS: ("cannot write", "the file system is read-only; choose another --out"),
    errno.EDQUOT: ("cannot write", "disk quota exceeded; free some space or choose another --out"),
}
"""errno -> (what failed, the fix) for the OSErrors that are the machine's, not a bug (CLI exit status 1)."""


def environment_error(err: BaseException, where: str | os.PathLike[str] | None = None) -> str | None:
    """The one-line message for an environment error (see :data:`ENVIRONMENT_ERRNOS`), else ``None``.

    The path is the error's own ``filename``, else ``where`` (e.g. the command's ``--out``): a failed
    ``write()`` on a full disk carries no file name.
    """
    if not isinstance(err, OSError):
        return _failed_save(err, where)
    if err.errno not in ENVIRONMENT_ERRNOS:
        return None
    verb, fix = ENVIRONMENT_ERRNOS[err.errno]
    path = err.filename if err.filename is not None else where
    target = f" {os.fsdecode(path) if isinstance(path, bytes) else path}" if path is not None else ""
    reason = err.strerror or os.strerror(err.errno)
    return f"{verb}{target}: {reason} ({fix})"


SAVE_FAILURES = ("PytorchStreamWriter failed writing", "file write failed", "unexpected pos", "No space left on device",
                 "StorageFull", "Disk quota exceeded")
"""Words in the errors torch (``RuntimeError`` from its zip writer) and safetensors (``SafetensorError``) raise
instead of an ``OSError`` when a write fails, almost always on a full disk."""


def _failed_save(err: BaseException, where: str | os.PathLike[str] | None) -> str | None:
    """The one-line message for a checkpoint save that torch or safetensors could not finish, else ``None``."""
    text = str(err)
    if not isinstance(err, Exception) or not any(word in text for word in SAVE_FAILURES):
        return None
    if type(err).__name__ not in ("RuntimeError", "SafetensorError"):
        return None
    target = f" {os.fsdecode(where)}" if where is not None else ""
    library = "torch" if isinstance(err, RuntimeError) else "safetensors"
    return (f"cannot write{target}: {library} could not finish writing a file, most likely a full disk "
            "(free some space or choose another --out)")
