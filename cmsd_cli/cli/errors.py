"""User errors on the command line: one sentence on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

USAGE_EXIT_CODE = 2


class UserInputError(Exception):
    """An error the user can fix; its message is one sentence naming the input and the fix."""


def fail(message: str) -> NoReturn:
    """Print `message` as one line on stderr and exit with code 2."""
    print(f"Error: {message}", file=sys.stderr, flush=True)
    raise typer.Exit(USAGE_EXIT_CODE)
