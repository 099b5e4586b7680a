"""The base of every error that is the user's to fix (bad config, missing file, missing extra).

The CLI prints such an error as one line and exits with status 2, without a traceback.
Library code raises a subclass with a message that names the problem and the fix.
"""


class EgrcError(Exception):
    """A user-facing error whose message is one line naming the problem and the fix."""


USER_ERRORS: tuple[type[BaseException], ...] = (EgrcError,)
