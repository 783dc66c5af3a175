"""The one exception type the CLI turns into a one-line message and an exit code."""

import re

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


def error_line(error: BaseException) -> str:
    """The first non-empty line of ``error``'s message without terminal colour codes; its type name if empty."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(error))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
