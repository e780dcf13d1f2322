"""Model loading: hub ids, local folders, GGUF files (converted once and cached), presets and self-drafts."""

from cmsd_cli.models.cache import cache_root
from cmsd_cli.models.device import resolve_device, resolve_dtype
from cmsd_cli.models.errors import ModelLoadError
from cmsd_cli.models.loading import ModelPair, load_pair
from cmsd_cli.models.presets import DEFAULT_PRESET, PRESETS, Preset, get_preset, preset_availability
from cmsd_cli.models.spec import ModelSpec, parse_spec

__all__ = [
    "DEFAULT_PRESET",
    "PRESETS",
    "ModelLoadError",
    "ModelPair",
    "ModelSpec",
    "Preset",
    "cache_root",
    "get_preset",
    "load_pair",
    "parse_spec",
    "preset_availability",
    "resolve_device",
    "resolve_dtype",
]
