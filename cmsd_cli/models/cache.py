"""A folder cache of converted models whose entries are written atomically and verified before use.

Layout under `cache_root()`:

    converted/<key>/            one complete entry: model and tokenizer files, manifest.json, COMPLETE
    converted/.tmp-<key>-*/     an entry being written (renamed into place when done)
    converted/<key>.lock        held while one process builds <key>, so two processes never convert twice

An entry is used only when its COMPLETE marker exists and every file listed in manifest.json has the
recorded size and SHA-256. Anything else (a crash mid-write, a truncated or edited file) is logged as a
warning and the entry is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

CACHE_ENV = "CMSD_CACHE"
MANIFEST_NAME = "manifest.json"
MARKER_NAME = "COMPLETE"
MANIFEST_FORMAT = 1

_HASH_BLOCK = 8 * 1024 * 1024


def cache_root() -> Path:
    """Return the cmsd cache folder: $CMSD_CACHE, else $XDG_CACHE_HOME/cmsd, else ~/.cache/cmsd."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "cmsd"
    return Path.home() / ".cache" / "cmsd"


def converted_dir() -> Path:
    return cache_root() / "converted"


def entry_path(key: str) -> Path:
    return converted_dir() / key


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def verify_entry(entry: Path) -> bool:
    """Check an entry against its manifest; log a warning and return False when it is partial or corrupt.

    A missing entry returns False without a warning. Hashing reads every file once (about 0.7 s per GB
    on one core), which also brings the files into the page cache for the load that follows.
    """
    if not entry.is_dir():
        return False

    problem = _find_problem(entry)
    if problem is not None:
        logger.warning("Cache entry %s is unusable (%s); rebuilding it.", entry, problem)
        return False
    return True


def read_manifest(entry: Path) -> dict:
    return json.loads((entry / MANIFEST_NAME).read_text(encoding="utf-8"))


def build_entry(key: str, build: Callable[[Path], None], source: dict) -> Path:
    """Return the verified entry for `key`, building it with `build(folder)` when it is missing or unusable.

    `build` writes the model and tokenizer files into the empty folder it receives. The manifest and
    the COMPLETE marker are written after it returns, and the folder is renamed into place last, so a
    crash at any point leaves either no entry or a complete one. `source` (a JSON-serialisable dict
    describing what was converted) is stored in the manifest.
    """
    entry = entry_path(key)
    if verify_entry(entry):
        return entry

    converted_dir().mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(converted_dir() / f"{key}.lock"):
        # Another process may have finished the same entry while this one waited for the lock.
        if entry.is_dir() and _find_problem(entry) is None:
            return entry

        _remove_stale_temporaries(key)
        temporary = converted_dir() / f".tmp-{key}-{os.getpid()}-{secrets.token_hex(4)}"
        temporary.mkdir()
        try:
            build(temporary)
            _write_manifest(temporary, source)
            (temporary / MARKER_NAME).write_text(f"{time.time():.0f}\n", encoding="utf-8")
            _replace(entry, temporary)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
    return entry


def _find_problem(entry: Path) -> str | None:
    if not (entry / MARKER_NAME).is_file():
        return "no completion marker, so it was never finished"
    try:
        manifest = read_manifest(entry)
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"unreadable manifest: {error}"
    if manifest.get("format") != MANIFEST_FORMAT:
        return f"manifest format {manifest.get('format')!r}, expected {MANIFEST_FORMAT}"

    for name, recorded in files.items():
        path = entry / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != recorded["size"]:
            return f"{name} has {size} bytes, expected {recorded['size']}"
        if sha256_file(path) != recorded["sha256"]:
            return f"{name} does not match its recorded SHA-256"
    return None


def _write_manifest(folder: Path, source: dict) -> None:
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            name = path.relative_to(folder).as_posix()
            files[name] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    manifest = {"format": MANIFEST_FORMAT, "created": time.time(), "source": source, "files": files}
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _replace(entry: Path, temporary: Path) -> None:
    """Rename `temporary` to `entry`, moving an unusable old entry aside first."""
    trash = None
    if entry.exists():
        trash = converted_dir() / f".old-{entry.name}-{secrets.token_hex(4)}"
        entry.rename(trash)
    temporary.rename(entry)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def _remove_stale_temporaries(key: str) -> None:
    # Called with the key's lock held, so any temporary folder for this key belongs to a dead process.
    for stale in converted_dir().glob(f".tmp-{key}-*"):
        logger.info("Removing the partial cache folder %s left by an interrupted conversion.", stale)
        shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; concurrent builds are still safe, only duplicated.
        yield
        return

    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
