"""Errors a user can act on.

``UserError`` is raised for bad input (a missing file, an unknown key, a
checkpoint of the wrong architecture...). The command line prints its message
on one line and exits with status 2, without a traceback: the message itself
must name the file or key and say what to do.
"""


class UserError(Exception):
    """Bad input the user can fix. The message names the file/key and the fix."""


class RunFailed(Exception):
    """A LoadGen run completed every query but some inferences failed."""


class Interrupted(BaseException):
    """Ctrl-C (SIGINT) or SIGTERM stopped a command; the command line exits with 128 + the signal.

    A ``BaseException``, like ``KeyboardInterrupt``, so no ``except Exception`` swallows it."""

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message or f"interrupted by signal {signum}")
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum
