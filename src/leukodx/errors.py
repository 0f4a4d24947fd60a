"""One exception type for problems a user can fix (bad file, bad config, missing data).

The CLI prints these as a single line and exits non-zero; anything else is a bug.
"""


class LeukodxError(Exception):
    """A user-facing error with a plain one-line message."""


class BadImageError(LeukodxError):
    """An image file that cannot be used; the message names the file and the problem."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(LeukodxError):
    """A configuration value that is missing, of the wrong type or out of range."""
