"""The project's error types for bad input: what a person fixes by changing a flag or a file.

Library code raises them with a message that says what was expected, what was found and
what to do; only the entry point (`cosearch.cli.main_wrapper`) catches them, turning each
into one `error: ...` line and exit code 2. Nothing else lives here.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input a person can fix; the message names the flag or file and what to do."""


class UsageError(UserError):
    """A malformed command line (what argparse complains about)."""


class InputFileError(UserError):
    """An input file that is missing, unreadable or malformed (the message names it and,
    where it helps, the line)."""


class OutputPathError(UserError):
    """An output path that cannot be written (a file where a directory is needed, a
    directory where a file is needed, no permission)."""
