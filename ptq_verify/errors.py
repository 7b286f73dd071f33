"""Errors a user can cause. The CLI prints them as one line and exits 2, without a traceback."""


class UserError(Exception):
    """Bad input from the user: a file, an expression, an option. The message says where."""

    exit_code = 2
