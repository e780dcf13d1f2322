"""Calibration profile files: the chosen parameters with everything needed to judge and reproduce them.

A profile is a JSON object with `"schema": 1`. Other commands read only `policy_params` and
`verify_params`, after checking that the profile was made for the loaded model pair.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from pathlib import Path
from typing import Any

import torch

from cmsd_cli.policies import make_policy, make_verifier

logger = logging.getLogger(__name__)

PROFILE_SCHEMA = 1
PROFILE_KIND = "cmsd-calibration-profile"
PROFILE_POLICY = "cmsd"


class ProfileError(ValueError):
    """A profile that cannot be used; the message is one sentence naming the file and the fix."""


class InvalidProfileError(ProfileError):
    """The file is not a valid cmsd profile (unreadable, not JSON, another schema, bad values)."""


class ProfileMismatchError(ProfileError):
    """The profile was calibrated for another model pair."""


def device_description(device: torch.device) -> dict[str, Any]:
    """Describe the device well enough to tell whether measured costs carry over: type, model name, threads."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    elif device.type == "cpu":
        name = _cpu_name()
    else:
        name = device.type
    return {"type": device.type, "name": name, "threads": torch.get_num_threads()}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def write_profile(profile: dict[str, Any], path: Path) -> None:
    """Write `profile` as indented JSON, through a temporary file so a reader never sees half a profile."""
    check_profile(profile, str(path))
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(json.dumps(profile, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def read_profile(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a profile file; raise InvalidProfileError when it is not a valid profile."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise InvalidProfileError(f"Profile '{name}' not found, so check the path or run 'cmsd calibrate'.") from error
    except IsADirectoryError as error:
        raise InvalidProfileError(
            f"Profile '{name}' is a folder, but a profile JSON file written by 'cmsd calibrate --out' is expected."
        ) from error
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidProfileError(f"Profile '{name}' could not be read ({error}), so check the file.") from error
    try:
        profile = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidProfileError(
            f"Profile '{name}' is not valid JSON ({error}), so write it again with 'cmsd calibrate'."
        ) from error
    check_profile(profile, name)
    return profile


def check_profile(profile: Any, name: str) -> None:
    """Raise InvalidProfileError unless `profile` has schema 1, the model names and valid parameters."""
    if not isinstance(profile, dict) or profile.get("kind") != PROFILE_KIND:
        raise InvalidProfileError(f"'{name}' is not a cmsd calibration profile, so pass a file written by 'cmsd calibrate'.")
    schema = profile.get("schema")
    if schema != PROFILE_SCHEMA:
        raise InvalidProfileError(
            f"Profile '{name}' has schema {schema!r} but this cmsd reads schema {PROFILE_SCHEMA}, "
            "so run 'cmsd calibrate' again."
        )

    models = profile.get("models")
    if not isinstance(models, dict) or not isinstance(models.get("target"), str) or "draft" not in models:
        raise InvalidProfileError(f"Profile '{name}' does not name its target and draft models, so run 'cmsd calibrate' again.")

    for key, build, rule in (
        ("policy_params", make_policy, PROFILE_POLICY),
        ("verify_params", make_verifier, profile.get("verify", "greedy")),
    ):
        params = profile.get(key)
        if not isinstance(params, dict):
            raise InvalidProfileError(f"Profile '{name}' has no {key} object, so run 'cmsd calibrate' again.")
        try:
            build(rule, params)
        except (TypeError, ValueError) as error:
            raise InvalidProfileError(f"Profile '{name}' has invalid {key} ({error}), so run 'cmsd calibrate' again.") from error


def load_profile(path: str | os.PathLike, pair, *, warn_on_other_machine: bool = True) -> dict[str, dict[str, Any]]:
    """Read a profile for `pair` (a ModelPair) and return its {"policy_params", "verify_params"}.

    Raises InvalidProfileError for a file that is not a valid profile and ProfileMismatchError for
    a profile made for another target or draft model. A profile measured on another device or
    dtype is still returned, with a warning unless `warn_on_other_machine` is false, because its
    parameters may still be near the best. The policy parameters are those of the "cmsd" policy.
    """
    name = str(path)
    profile = read_profile(path)

    models = profile["models"]
    if models["target"] != pair.target_name or models["draft"] != pair.draft_name:
        raise ProfileMismatchError(
            f"Profile '{name}' was calibrated for target {models['target']} with draft {models['draft']}, "
            f"not for {pair.target_name} with draft {pair.draft_name}, so run 'cmsd calibrate' for this pair."
        )

    if warn_on_other_machine:
        _warn_on_other_machine(profile, pair, name)
    return {"policy_params": dict(profile["policy_params"]), "verify_params": dict(profile["verify_params"])}


def _warn_on_other_machine(profile: dict[str, Any], pair, name: str) -> None:
    recorded = profile.get("device") or {}
    current = device_description(pair.device)
    differences = []
    for field in ("type", "name"):
        if recorded.get(field) != current[field]:
            differences.append(f"device {recorded.get(field)!r} instead of {current[field]!r}")
    if recorded.get("threads") != current["threads"]:
        differences.append(f"{recorded.get('threads')} torch threads instead of {current['threads']}")
    recorded_dtype = profile.get("dtype")
    if recorded_dtype != str(pair.dtype).removeprefix("torch."):
        differences.append(f"dtype {recorded_dtype!r} instead of {str(pair.dtype).removeprefix('torch.')!r}")
    if differences:
        logger.warning(
            "Profile '%s' was measured with %s; its parameters are used, but run 'cmsd calibrate' here "
            "for settings tuned to this machine.",
            name,
            " and ".join(differences),
        )
