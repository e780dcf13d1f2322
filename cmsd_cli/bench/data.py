"""Benchmark inputs: source and reference files, or a named test set fetched by sacrebleu's downloader."""

from __future__ import annotations

import logging
import socket
import urllib.error
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

# Seconds to wait for the test-set server before declaring the network unreachable.
DOWNLOAD_TIMEOUT_SECONDS = 15.0


class BenchDataError(ValueError):
    """Unreadable or inconsistent benchmark input; the message names the input and the fix."""


@dataclass(frozen=True)
class BenchData:
    """Source lines, their references (or None) and the language pair they belong to, if known."""

    sources: list[str]
    references: list[str] | None
    src: str | None = None
    tgt: str | None = None
    origin: str = ""


def read_lines(path: Path, role: str) -> list[str]:
    """Read a UTF-8 text file as lines without their line endings. `role` names the file in errors."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as error:
        raise BenchDataError(f"The {role} file '{path}' was not found; check the path.") from error
    except IsADirectoryError as error:
        raise BenchDataError(
            f"The {role} path '{path}' is a folder; give a text file with one input per line."
        ) from error
    except UnicodeDecodeError as error:
        raise BenchDataError(f"The {role} file '{path}' is not UTF-8 text; convert it to UTF-8.") from error
    except OSError as error:
        raise BenchDataError(
            f"The {role} file '{path}' could not be read ({error.strerror}); check its permissions."
        ) from error
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # a final newline ends the last line; it does not start another
    return [line.rstrip("\r") for line in lines]


def load_files(source: Path, reference: Path | None) -> BenchData:
    """Read a source file and an optional reference file with the same number of lines."""
    sources = read_lines(source, "source")
    references = None
    if reference is not None:
        references = read_lines(reference, "reference")
        if len(references) != len(sources):
            raise BenchDataError(
                f"The reference file '{reference}' has {len(references)} lines but the source file '{source}' has "
                f"{len(sources)}; give one reference line per source line."
            )
    return BenchData(sources=sources, references=references, origin=str(source))


def parse_dataset_name(spec: str) -> tuple[str, str]:
    """Split "wmt14:en-de" into the sacrebleu test set and language pair, checking both exist."""
    from sacrebleu.dataset import DATASETS

    name, separator, langpair = spec.partition(":")
    if not separator or not name or not langpair:
        raise BenchDataError(f"Invalid --dataset '{spec}'; write TESTSET:SRC-TGT, for example wmt14:en-de.")
    if name not in DATASETS:
        raise BenchDataError(
            f"Unknown sacrebleu test set '{name}'; run `sacrebleu --list` for the names, for example wmt14."
        )
    pairs = sorted(DATASETS[name].langpairs)
    if langpair not in pairs:
        raise BenchDataError(f"Test set '{name}' has no language pair '{langpair}'; it has: {', '.join(pairs)}.")
    return name, langpair


def load_dataset(spec: str, *, timeout: float = DOWNLOAD_TIMEOUT_SECONDS) -> BenchData:
    """Fetch a sacrebleu test set ("wmt14:en-de") with sacrebleu's downloader, or use its local copy.

    sacrebleu keeps downloads under $SACREBLEU (default ~/.sacrebleu), so only the first use needs the
    network. Without one, this raises BenchDataError after at most `timeout` seconds per connection
    attempt (sacrebleu itself does not retry).
    """
    from sacrebleu.dataset import DATASETS

    name, langpair = parse_dataset_name(spec)
    dataset = DATASETS[name]
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        source_file = dataset.get_source_file(langpair)
        reference_file = dataset.get_reference_files(langpair)[0]
    except (urllib.error.URLError, TimeoutError, ConnectionError, socket.gaierror) as error:
        reason = getattr(error, "reason", error)
        raise BenchDataError(
            f"Could not download test set {name} ({langpair}) with sacrebleu ({reason}); the network seems "
            "unreachable, so pass local files with --source and --reference instead."
        ) from error
    except SystemExit as error:
        # sacrebleu exits the process on an SSL error or a checksum mismatch, after logging the reason.
        raise BenchDataError(
            f"sacrebleu could not fetch test set {name} ({langpair}); see its message above, or pass local files "
            "with --source and --reference instead."
        ) from error
    finally:
        socket.setdefaulttimeout(previous_timeout)

    src, tgt = langpair.split("-", 1)
    data = load_files(Path(source_file), Path(reference_file))
    return BenchData(sources=data.sources, references=data.references, src=src, tgt=tgt, origin=f"sacrebleu:{spec}")
