"""A preset's own calibration profile: used without --profile, replaced by --profile, off with --profile none."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from cmsd_cli.calibrate import write_profile
from cmsd_cli.calibrate.profile import PROFILE_KIND
from cmsd_cli.cli.options import DecodingOptions
from cmsd_cli.models import presets

SHIPPED_PARAMS = {"confidence_weight": 0.0, "theta_draft": 0.6, "k_min": 1, "k_max": 3, "track": "acceptance",
                  "ema_decay": 0.7, "initial": 0.5}
USER_PARAMS = {**SHIPPED_PARAMS, "k_max": 5}


def _profile(params: dict, device_name: str) -> dict:
    return {
        "schema": 1,
        "kind": PROFILE_KIND,
        "created": "2025-01-01T00:00:00+00:00",
        "models": {"target": "tiny-target", "draft": "tiny-draft", "preset": "tiny"},
        "device": {"type": "cpu", "name": device_name, "threads": 99},
        "dtype": "float32",
        "versions": {"torch": torch.__version__},
        "policy": "cmsd",
        "policy_params": dict(params),
        "verify": "greedy",
        "verify_params": {},
    }


@pytest.fixture()
def tiny_preset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A preset "tiny" whose shipped profile was measured on another machine."""
    preset = presets.Preset("tiny", "tiny-target", "tiny-draft", ("translate",), "base", "test", profile="tiny.json")
    monkeypatch.setitem(presets.PRESETS, "tiny", preset)
    monkeypatch.setattr(presets, "shipped_data_folder", lambda: tmp_path)
    write_profile(_profile(SHIPPED_PARAMS, "another CPU"), tmp_path / "tiny.json")
    return tmp_path


def _pair(target: str = "tiny-target", draft: str | None = "tiny-draft", preset: str | None = "tiny") -> SimpleNamespace:
    return SimpleNamespace(target_name=target, draft_name=draft, preset=preset,
                           device=torch.device("cpu"), dtype=torch.float32)


def test_shipped_profile_applies_quietly(tiny_preset: Path, caplog: pytest.LogCaptureFixture) -> None:
    decoding = DecodingOptions(policy="static", draft_length=2)
    with caplog.at_level(logging.INFO):
        kwargs = DecodingOptions().engine_kwargs(_pair())
        static_kwargs = decoding.engine_kwargs(_pair())

    assert kwargs["policy_params"] == SHIPPED_PARAMS
    assert static_kwargs["policy_params"] == {"confidence_weight": 0.0, "draft_length": 2}
    assert caplog.records == []  # no other-machine or dropped-parameter warnings for a shipped profile


def test_command_line_overrides_shipped_profile(tiny_preset: Path) -> None:
    kwargs = DecodingOptions(k_max=4).engine_kwargs(_pair())

    assert kwargs["policy_params"] == {**SHIPPED_PARAMS, "k_max": 4}


def test_profile_option_replaces_shipped_profile(tiny_preset: Path) -> None:
    own = tiny_preset / "own.json"
    write_profile(_profile(USER_PARAMS, "another CPU"), own)
    decoding = DecodingOptions(profile=own)

    assert decoding.profile_in_effect(_pair()) == own
    assert decoding.engine_kwargs(_pair())["policy_params"] == USER_PARAMS


def test_profile_none_uses_builtin_defaults(tiny_preset: Path) -> None:
    decoding = DecodingOptions(profile=Path("none"))
    decoding.check()

    assert decoding.profile_in_effect(_pair()) is None
    assert decoding.engine_kwargs(_pair())["policy_params"] is None


def test_shipped_profile_needs_preset_pair(tiny_preset: Path) -> None:
    assert DecodingOptions().profile_in_effect(_pair(draft="other-draft")) is None
    assert DecodingOptions().profile_in_effect(_pair(target="other-target")) is None  # --preset with --target
    assert DecodingOptions().profile_in_effect(_pair(preset=None)) is None
    assert DecodingOptions().profile_in_effect(None) is None


def test_missing_shipped_file_is_skipped(tiny_preset: Path) -> None:
    (tiny_preset / "tiny.json").unlink()

    assert DecodingOptions().profile_in_effect(_pair()) is None
