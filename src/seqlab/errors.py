"""User-facing errors.

`UserError` is raised for anything the user can fix (bad file, bad flag, bad shape in a CLI
input). The CLI prints its message on one line and exits non-zero, without a traceback.
"""


class UserError(Exception):
    """A problem with the user's input: the message says what and where, in one line."""


class InputWarning(UserWarning):
    """Something in the user's input was changed to make it usable (missing values filled, an
    over-long sentence truncated, rows sorted): the message says what and how much, in one
    line. The CLI prints it as "warning: ..." on stderr."""
