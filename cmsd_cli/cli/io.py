"""Reading input lines from files or stdin, and writing one whole result line at a time.

Lines are split on "\\n" only (a trailing "\\r" is dropped), so the line count matches `wc -l` plus
a last line without a newline. Input is UTF-8, with an optional byte order mark.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Optional

from cmsd_cli.cli.errors import UserInputError

STDIN_NAME = "-"

# Every character Python's str.splitlines() breaks on, so a result never becomes two lines for any reader.
_LINE_BREAKS = re.compile(r"\s*[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]+\s*")


@dataclass(frozen=True)
class InputLine:
    """One input line: its 1-based position in the whole run, where it came from, and its text."""

    number: int
    source: str
    source_line: int
    text: str


class Inputs:
    """The input lines of a run, from files read up front and at most one stream read as it arrives.

    `total` is the number of lines when every source was read up front, else None.
    """

    def __init__(self, sources: list[tuple[str, Optional[list[str]], Optional[BinaryIO]]]) -> None:
        self._sources = sources
        counts = [len(lines) for _, lines, _ in sources if lines is not None]
        self.total: Optional[int] = sum(counts) if len(counts) == len(sources) else None

    def __iter__(self) -> Iterator[InputLine]:
        number = 0
        for name, lines, stream in self._sources:
            text_lines = lines if lines is not None else _stream_lines(name, stream)
            for source_line, text in enumerate(text_lines, start=1):
                number += 1
                yield InputLine(number=number, source=name, source_line=source_line, text=text)


def _decode(name: str, line_number: int, raw: bytes) -> str:
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserInputError(
            f"Line {line_number} of {name} is not valid UTF-8 (byte {error.start + 1}), so convert it to UTF-8."
        ) from error
    if line_number == 1:
        text = text.removeprefix("\ufeff")
    return text


def _split_lines(name: str, data: bytes) -> list[str]:
    if not data:
        return []
    pieces = data.split(b"\n")
    if data.endswith(b"\n"):
        pieces.pop()
    return [_decode(name, number, raw) for number, raw in enumerate(pieces, start=1)]


def _stream_lines(name: str, stream: BinaryIO) -> Iterator[str]:
    for number, raw in enumerate(stream, start=1):
        yield _decode(name, number, raw.removesuffix(b"\n"))


def _read_file(path: str) -> bytes:
    if os.path.isdir(path):
        raise UserInputError(f"Input '{path}' is a directory, but a text file with one input per line is expected.")
    try:
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError as error:
        raise UserInputError(f"Input file '{path}' not found, so check the path.") from error
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise UserInputError(f"Input file '{path}' could not be read ({reason}), so check its permissions.") from error


def open_inputs(paths: list[str], stdin: Optional[BinaryIO] = None) -> Inputs:
    """Read every input file now, so a bad path fails before any model loads.

    No paths, or the path "-", means standard input. Standard input is read up front when it is
    a regular file (a shell redirect) and line by line otherwise, so a pipe is processed as it
    arrives. It can be read only once, so "-" may appear once.
    """
    if not paths:
        paths = [STDIN_NAME]
    if paths.count(STDIN_NAME) > 1:
        raise UserInputError("Standard input ('-') can be read only once, so give '-' at most once.")

    sources: list[tuple[str, Optional[list[str]], Optional[BinaryIO]]] = []
    for path in paths:
        if path != STDIN_NAME:
            sources.append((path, _split_lines(path, _read_file(path)), None))
            continue

        stream = stdin if stdin is not None else sys.stdin.buffer
        if _is_regular_file(stream):
            sources.append(("standard input", _split_lines("standard input", stream.read()), None))
        else:
            sources.append(("standard input", None, stream))
    return Inputs(sources)


def _is_regular_file(stream: BinaryIO) -> bool:
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (AttributeError, OSError, ValueError):
        # A stream without a file descriptor (an in-memory buffer in tests) is read line by line.
        return False


def flatten(text: str) -> str:
    """Join a result's lines with single spaces, so one input line always gives one output line."""
    return _LINE_BREAKS.sub(" ", text).strip()


def check_output_path(path: Path) -> None:
    """Reject an output path that cannot be written, before any model loads."""
    if path.is_dir():
        raise UserInputError(f"Output '{path}' is a directory, so give a file name to -o/--output.")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UserInputError(f"Output folder '{parent}' not found, so create it or choose another -o/--output path.")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserInputError(f"Output file '{path}' cannot be written (permission denied), so choose another path.")


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold back Ctrl-C until the block ends, so a result line is never cut in half.

    Outside the main thread (where signal handlers cannot be set) or when SIGINT is ignored, the
    block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):
        yield
        return

    received: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            previous(signal.SIGINT, None)


class LineWriter:
    """Writes each result as one whole UTF-8 line and flushes it at once.

    Lines go to `path`, to `sink` (the live view passes one when stdout is the same terminal it
    draws on), or else to stdout. With a path, the file is opened (and emptied) only when the
    first line is written, so a run that fails while loading models leaves an existing file as it was.
    """

    def __init__(self, path: Optional[Path] = None, *, sink: Optional[Callable[[str], None]] = None) -> None:
        self.path = path
        self.sink = sink if path is None else None
        self.lines_written = 0
        self._file: Optional[BinaryIO] = None

    def _stream(self) -> BinaryIO:
        if self.path is None:
            return sys.stdout.buffer
        if self._file is None:
            try:
                self._file = open(self.path, "wb")
            except OSError as error:
                reason = (error.strerror or str(error)).lower()
                raise UserInputError(f"Output file '{self.path}' could not be opened ({reason}).") from error
        return self._file

    def write_line(self, text: str) -> None:
        data = (text + "\n").encode("utf-8")
        with sigint_deferred():
            if self.sink is not None:
                self.sink(text)
            else:
                stream = self._stream()
                stream.write(data)
                stream.flush()
            self.lines_written += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def silence_stdout() -> None:
    """Point stdout at /dev/null after the reader went away, so the interpreter's final flush is quiet.

    This is the way the Python documentation recommends for handling SIGPIPE (the `signal` module
    page, "Note on SIGPIPE").
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
