"""The one exception type for errors a user can cause and fix."""


class BincountError(Exception):
    """A problem with the user's input, config or environment.

    The message always says what is wrong and what to do about it; entrypoints print it
    without a traceback and exit non-zero.
    """
