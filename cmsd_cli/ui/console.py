"""The stderr console and the logging handler that writes warnings and errors through it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from rich.console import Console

LOGGER_NAME = "cmsd_cli"


def stderr_console(*, force_terminal: bool | None = None, width: int | None = None) -> Console:
    """Build the console for everything that is not a result: live view, summaries, warnings, errors.

    `force_terminal=True` renders the live view even when stderr is not a terminal.
    """
    return Console(stderr=True, highlight=False, force_terminal=force_terminal, width=width)


class ConsoleLogHandler(logging.Handler):
    """Writes each log record as one line through a rich console, so it appears above a running live view."""

    def __init__(self, console: Console, level: int = logging.WARNING) -> None:
        super().__init__(level)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = f"{record.levelname.capitalize()}: {self.format(record)}"
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        except Exception:
            self.handleError(record)


def attach_log_handler(console: Console, *, quiet: bool = False) -> ConsoleLogHandler:
    """Route warnings (or, with `quiet`, only errors) of the `cmsd_cli` loggers to `console`.

    Returns the handler so the caller can remove it with `detach_log_handler` when the command ends.
    """
    handler = ConsoleLogHandler(console, logging.ERROR if quiet else logging.WARNING)
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    # The handler writes the records, so the root logger's handlers must not repeat them.
    logger.propagate = False
    return handler


def detach_log_handler(handler: ConsoleLogHandler) -> None:
    logger = logging.getLogger(LOGGER_NAME)
    logger.removeHandler(handler)
    if not logger.handlers:
        logger.propagate = True


@contextlib.contextmanager
def library_progress_bars_disabled() -> Iterator[None]:
    """Turn off the tqdm bars of transformers and huggingface_hub for the block, then restore them.

    Those bars would break a live view and put non-warning text on a stderr that is not a terminal.
    """
    import huggingface_hub.utils as hub_utils
    from transformers.utils import logging as transformers_logging

    transformers_enabled = transformers_logging.is_progress_bar_enabled()
    hub_disabled = hub_utils.are_progress_bars_disabled()
    transformers_logging.disable_progress_bar()
    hub_utils.disable_progress_bars()
    try:
        yield
    finally:
        if transformers_enabled:
            transformers_logging.enable_progress_bar()
        if not hub_disabled:
            hub_utils.enable_progress_bars()
