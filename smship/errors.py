"""Errors smship reports as one clear line instead of a traceback."""


class SmshipError(Exception):
    """A failure the user can act on; the message says what and where."""

