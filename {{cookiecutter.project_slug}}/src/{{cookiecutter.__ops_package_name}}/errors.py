"""The one user-error type: a mistake the user can fix, which the CLI prints as one line on
stderr with exit status 2 (a failed gate, step or execution is exit status 1)."""


class UserError(Exception):
    """A problem the user can fix; the message says how."""
