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
