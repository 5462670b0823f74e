"""User-facing errors.

`UserError` is raised for anything the user can fix (bad file, bad flag, bad shape in a CLI
input). The CLI prints its message on one line and exits non-zero, without a traceback.
"""


class UserError(Exception):
    """A problem with the user's input: the message says what and where, in one line."""
