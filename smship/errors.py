"""Errors smship reports as one clear line instead of a traceback."""


class SmshipError(Exception):
    """A failure the user can act on; the message says what and where."""


class NotBuiltYet(SmshipError):
    def __init__(self, command: str):
        super().__init__(f"'smship {command}' is not built yet in this version of smship; nothing was done")
