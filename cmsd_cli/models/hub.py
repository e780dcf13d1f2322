"""Hugging Face hub access that fails in seconds, not minutes, on a machine without the network.

With no network, `from_pretrained("org/name")` retries for about 25 seconds before it raises (measured
with transformers 5.25 and huggingface_hub 2.4). So a hub id is first tried from the local hub cache
only. When that misses, one TCP connection to the hub endpoint (3 s timeout) decides whether a download
is worth trying. The environment is never changed: HF_HUB_OFFLINE is read, not set.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlparse

from cmsd_cli.models.errors import ModelLoadError

logger = logging.getLogger(__name__)

T = TypeVar("T")

PROBE_TIMEOUT_SECONDS = 3.0
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def offline_alternatives() -> str:
    return "pass a local model folder or a .gguf file instead, or use --preset offline"


def hub_cached(repo_id: str) -> bool:
    """Return whether the local hub cache contains the config and weights of `repo_id` (no network access)."""
    from huggingface_hub import try_to_load_from_cache

    def cached(filename: str) -> bool:
        try:
            return isinstance(try_to_load_from_cache(repo_id, filename), str)
        except ValueError:  # not a valid repo id
            return False

    return cached("config.json") and any(cached(name) for name in _WEIGHT_FILES)


def hub_reachable(timeout: float = PROBE_TIMEOUT_SECONDS) -> bool:
    """Return whether a TCP connection to the hub endpoint opens within `timeout` seconds.

    Behind a proxy a direct connection proves nothing, so the result is True and huggingface_hub decides.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return True

    endpoint = urlparse(constants.ENDPOINT)
    host = endpoint.hostname
    if host is None:
        return True
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError as error:
        logger.debug("The hub endpoint %s:%s is unreachable: %s", host, port, error)
        return False


def load_from_hub(repo_id: str, role: str, load: Callable[..., T]) -> T:
    """Call `load(local_files_only=...)` for a hub id: from the local hub cache first, then from the hub.

    Raises ModelLoadError with one sentence when the hub cannot be reached or has no such model.
    """
    from huggingface_hub import errors as hub_errors

    try:
        return load(local_files_only=True)
    except OSError as error:
        logger.debug("%s is not fully in the local hub cache: %s", repo_id, error)

    if not hub_reachable():
        raise ModelLoadError(
            f"The {role} model {repo_id!r} is not in the local Hugging Face cache and the hub is unreachable; "
            f"{offline_alternatives()}."
        )

    try:
        return load(local_files_only=False)
    except OSError as error:
        # transformers re-raises hub errors as plain OSError, keeping the original as the cause.
        cause = _find_cause(error, (hub_errors.GatedRepoError, hub_errors.RepositoryNotFoundError, hub_errors.RevisionNotFoundError))
        if isinstance(cause, hub_errors.GatedRepoError):
            raise ModelLoadError(
                f"The {role} model {repo_id!r} is gated on the Hugging Face hub; accept its licence and log in with "
                f"`hf auth login`, or {offline_alternatives()}."
            ) from error
        if cause is not None:
            raise ModelLoadError(
                f"The {role} model {repo_id!r} was not found on the Hugging Face hub; check the id, or {offline_alternatives()}."
            ) from error
        raise ModelLoadError(
            f"The {role} model {repo_id!r} could not be loaded from the Hugging Face hub ({_first_line(error)}); "
            f"{offline_alternatives()}."
        ) from error


def _find_cause(error: BaseException, types: tuple[type[BaseException], ...]) -> BaseException | None:
    seen = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, types):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
