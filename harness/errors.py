"""The one exception type the CLI turns into a one-line message and an exit code."""

USAGE_ERROR = 2
CHECK_FAILED = 1


class HarnessError(Exception):
    """A problem the user can fix; printed as one line, never as a traceback.

    ``exit_code`` is 2 for usage and input errors (the default) and 1 when a
    check ran and failed (for example an export below its parity threshold).
    """

    def __init__(self, message: str, exit_code: int = USAGE_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code
