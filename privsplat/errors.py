"""The one exception type for errors a user can cause."""


class PrivsplatError(Exception):
    """A problem with the user's input or request.

    The message must say what is wrong and what to do about it; the CLI prints it
    without a traceback and exits with status 2.
    """
