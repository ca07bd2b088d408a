"""One exception type for bad input data, so the CLI can print it without a traceback."""


class DataError(ValueError):
    """Input data is unusable. The message names the file, the problem and, where possible, the fix."""
