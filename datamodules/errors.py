"""The user-error family. Every mistake a user can fix (a config key, a data file, a run ID, a refused
reproduction) raises a subclass of StwError; `stw` prints it as one clear message and exits 2. Anything else is
a bug and keeps its traceback.

It lives in the lowest layer (datamodules) so that every layer above can raise it without importing upwards.
"""


class StwError(Exception):
    """A user error: the message names what is wrong (the file, the key, the row) and how to fix it."""


class DataError(StwError):
    """Input data is unusable. The message names the file, the problem and, where possible, the fix."""


class ConfigError(StwError):
    """A run or sweep config that cannot be built; the message says which key and what is valid."""


class RunError(StwError):
    """A logged run that cannot be used for the command; the message says why and what to do instead."""


class TrackingError(StwError):
    """The tracking or study store cannot be used (unreachable, damaged, missing its driver)."""
